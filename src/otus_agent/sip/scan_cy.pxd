# What other compiled modules cimport from sip/scan_cy.py (Cython augments the module with it).
# The compiled lane (sip/writer_cy.py) tests its heuristic with the one looks_like_sip.

cdef bint _looks_like_sip(unsigned char* p, Py_ssize_t n) noexcept
# The compiled lane's Scanner.scan_at (no Python call): out is the Scanner's array.
cdef int _scan_at(long long[:] out, unsigned char* p, Py_ssize_t n, bint stream) except? -1
