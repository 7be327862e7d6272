# What other compiled modules cimport from sip/scan_cy.py (Cython augments the module with it).
# The compiled lane (sip/writer_cy.py) tests its heuristic with the one looks_like_sip.

cdef bint _looks_like_sip(unsigned char* p, Py_ssize_t n) noexcept
