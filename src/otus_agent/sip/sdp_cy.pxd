# What other compiled modules cimport from sip/sdp_cy.py (Cython augments the module with it).
# The compiled lane (sip/writer_cy.py) runs the one SDP scanner and writes JSON from its offsets
# (sip/sdpspans.pxd); the field walks are the scanner's too.

cdef Py_ssize_t _skip_ws(unsigned char* p, Py_ssize_t i, Py_ssize_t e, int enc) noexcept
cdef Py_ssize_t _skip_tok(unsigned char* p, Py_ssize_t i, Py_ssize_t e, int enc) noexcept
cdef bint _scan_sdp(unsigned char* p, Py_ssize_t a, Py_ssize_t b, long long* s) noexcept
cdef dict _sdp_dict(unsigned char* p, long long* s)
cdef int _sdp_kind(unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept
