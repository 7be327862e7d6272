# What the compiled lane (sip/writer_cy.py) cimports from sip/select_cy.py (Cython augments the
# module with it): the lane asks DialogSelector about every message with C calls, the Call-ID as the
# bytes it has (find), then open (an initial request not in the table) or step.

cdef extern from "Python.h":
    # what hash(bytes) computes (SipHash, seeded per process): the pure build calls hash() instead
    Py_hash_t _Py_HashBytes(const void* src, Py_ssize_t n)

cdef long long _hash(unsigned char* p, Py_ssize_t n) noexcept
cdef bint _ends(bint is_request, object method, long long status, object cseq_method)

cdef class DialogSelector:
    cdef readonly object selector
    cdef readonly long long max_dialogs
    cdef long long linger_ns
    cdef long long idle_ns
    cdef long long _idle_check
    cdef readonly long long matched_dialogs
    cdef readonly long long matched_messages
    cdef readonly long long unmatched
    cdef readonly long long evictions
    cdef readonly long long expired
    cdef readonly long long active
    # the table (select_cy.py's docstring): slots, entries, their Call-IDs, the lists' ends
    cdef long long* slots
    cdef long long* ent
    cdef dict keys
    cdef long long mask
    cdef long long fresh
    cdef long long free_head
    cdef long long lru_head
    cdef long long lru_tail
    cdef long long end_head
    cdef long long end_tail
    # the last find's Call-ID (its bytes borrowed until the open that may follow) and its hash
    cdef unsigned char* _kp
    cdef Py_ssize_t _kn
    cdef long long _h
    cdef object _key
    cpdef bint admit(self, long long ts, bint is_request, object method, object status, object cseq_method,
                     object call_id, object from_user, object to_user, object request_uri, object header=*,
                     bint in_dialog=*)
    cdef long long find(self, long long ts, unsigned char* cid, Py_ssize_t n)
    cdef bint open(self, long long ts, object method, object call_id, object from_user, object to_user,
                   object request_uri, object header)
    cdef bint step_at(self, long long e, long long ts, bint is_request, object method, long long status,
                      unsigned char* csm, Py_ssize_t csm_n)
    cdef bint step(self, long long e, long long ts, bint is_request, object method, long long status,
                   object cseq_method)
    cdef bint _same(self, long long e, unsigned char* cid, Py_ssize_t n) noexcept
    cdef void _store_key(self, long long e, Py_ssize_t b)
    cdef long long _probe(self, unsigned char* cid, Py_ssize_t n, long long h) noexcept
    cdef long long _insert(self, long long ts)
    cdef void _remove(self, long long e) noexcept
    cdef void _expire(self, long long ts) noexcept
    cdef void _lru_unlink(self, long long e) noexcept
    cdef void _lru_append(self, long long e) noexcept
    cdef void _end_unlink(self, long long e) noexcept
    cdef void _end_append(self, long long e) noexcept
