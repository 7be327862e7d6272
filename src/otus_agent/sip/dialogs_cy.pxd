# What the compiled lane (sip/writer_cy.py) cimports from sip/dialogs_cy.py (Cython augments the module
# with it): the lane feeds CallTable.step with C fields and writes a _Call's summary from its C fields.
# The values of the variables are assigned in dialogs_cy.py (the one definition).

cdef int K_NONE, K_OTHER, K_INVITE, K_BYE, K_CANCEL
cdef int S_TRYING, S_RINGING, S_ANSWERED, S_FAILED, S_CANCELLED, S_ENDED, S_TIMED_OUT
cdef long long NO_TS

cdef object _ms(long long a, long long b)

cdef class _Call:
    cdef object call_id
    cdef object from_tag
    cdef object from_user
    cdef object to_user
    cdef object to_tag
    cdef long long invite_ts
    cdef long long last_ts
    cdef long long ringing_ts
    cdef long long answer_ts
    cdef long long end_ts
    cdef long long final_status      # 0: none yet
    cdef int ended_by                # index into ENDED_BY
    cdef long long reinvites
    cdef int state                   # S_*, index into STATES
    cdef bint bye_pending
    cdef bint live                   # the table's entry for its Call-ID (False once removed)
    cdef dict summary(self, bint open_)

cdef class CallTable:
    cdef Py_ssize_t max_calls
    cdef long long timeout_ns
    cdef dict calls
    cdef list order                  # calls in the order they were added; order[head:] still to look at
    cdef Py_ssize_t head
    cdef readonly long long started
    cdef readonly long long completed
    cdef readonly long long evictions
    cdef readonly long long timeouts
    cdef _Call _oldest(self)
    cdef void _remove(self, _Call c)
    cdef int step(self, long long ts, object call_id, int csm, int mk, long long code, object from_tag,
                  object from_user, object to_user, object to_tag, list out)
