"""Walk classic-pcap record headers in a buffer without per-record objects.

Compiled by Cython when available (see setup.py); plain Python otherwise.
Fills caller-owned int64 arrays so one batch costs no allocations.
"""
import cython

# Returned as the third element of walk_pcap: why the walk stopped.
STOP_END = 0        # buffer exhausted on a record boundary
STOP_FULL = 1       # arrays full
STOP_PARTIAL = 2    # a record straddles the buffer end
STOP_CORRUPT = 3    # caplen beyond the limit


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u32(p: cython.p_uchar, off: cython.Py_ssize_t, swapped: cython.bint) -> cython.longlong:
    if swapped:
        return (cython.cast(cython.longlong, p[off]) << 24) | (p[off + 1] << 16) | (p[off + 2] << 8) | p[off + 3]
    return (cython.cast(cython.longlong, p[off + 3]) << 24) | (p[off + 2] << 16) | (p[off + 1] << 8) | p[off]


def walk_pcap(buf: bytes, pos: cython.Py_ssize_t, swapped: cython.bint, nsec: cython.bint,
              max_caplen: cython.longlong, offs: cython.longlong[:], caplens: cython.longlong[:],
              wirelens: cython.longlong[:], ts: cython.longlong[:]) -> tuple:
    """Index records from ``pos``; return (count, next position, stop reason).

    ``swapped`` means the file is big-endian (the record fields are read in
    network order); ``nsec`` selects nanosecond timestamps.
    """
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, buf)
    else:
        p = buf
    blen: cython.Py_ssize_t = len(buf)
    n: cython.Py_ssize_t = 0
    cap: cython.Py_ssize_t = len(offs)
    caplen: cython.longlong
    sub: cython.longlong
    if len(caplens) < cap or len(wirelens) < cap or len(ts) < cap:
        raise ValueError("walk_pcap: arrays of different sizes")
    while True:
        if n >= cap:
            return n, pos, STOP_FULL
        if blen - pos < 16:
            return n, pos, (STOP_END if blen == pos else STOP_PARTIAL)
        caplen = _u32(p, pos + 8, swapped)
        if caplen > max_caplen:
            return n, pos, STOP_CORRUPT
        if blen - pos - 16 < caplen:
            return n, pos, STOP_PARTIAL
        sub = _u32(p, pos + 4, swapped)
        ts[n] = _u32(p, pos, swapped) * 1000000000 + (sub if nsec else sub * 1000)
        wirelens[n] = _u32(p, pos + 12, swapped)
        caplens[n] = caplen
        offs[n] = pos + 16
        pos += 16 + caplen
        n += 1
