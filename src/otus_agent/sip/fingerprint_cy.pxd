# What the compiled lane (sip/writer_cy.py) cimports from sip/fingerprint_cy.py: the one FNV-1a, in place.

cdef unsigned long long _start() noexcept
cdef unsigned long long _fnv(unsigned long long h, unsigned char* p, long long a, long long b) noexcept
cdef unsigned long long _fnv_num(unsigned long long h, long long v) noexcept
cdef unsigned long long _sep(unsigned long long h) noexcept
cdef Py_ssize_t _hex(unsigned char* q, Py_ssize_t k, unsigned long long h) noexcept
