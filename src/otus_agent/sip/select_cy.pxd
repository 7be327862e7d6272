# What the compiled lane (sip/writer_cy.py) cimports from sip/select_cy.py (Cython augments the
# module with it): the lane asks DialogSelector.admit about every message with a C call.

cdef bint _ends(bint is_request, object method, object status, object cseq_method)

cdef class _Entry:
    cdef public long long last_ns
    cdef public long long ended_ns

cdef class DialogSelector:
    cdef readonly object selector
    cdef readonly object dialogs
    cdef object _ended
    cdef readonly long long max_dialogs
    cdef long long linger_ns
    cdef long long idle_ns
    cdef long long _idle_check
    cdef readonly long long matched_dialogs
    cdef readonly long long matched_messages
    cdef readonly long long unmatched
    cdef readonly long long evictions
    cdef readonly long long expired
    cpdef bint admit(self, long long ts, bint is_request, object method, object status, object cseq_method,
                     object call_id, object from_user, object to_user, object request_uri, object header=*,
                     bint in_dialog=*)
    cdef _Entry _add(self, object call_id, long long ts)
    cdef void _expire(self, long long ts)
