"""Walk classic-pcap record headers in a buffer without per-record objects.

Compiled by Cython when available (see setup.py); plain Python otherwise.
Fills caller-owned int64 arrays so one batch costs no allocations.
"""
try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

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


# TPACKET_V3 (linux/if_packet.h), little-endian hosts
TP_STATUS_VLAN_VALID = cython.declare(cython.int, 0x10)
TP_STATUS_VLAN_TPID_VALID = cython.declare(cython.int, 0x40)


def walk_tpacket3(buf: bytes, first: cython.Py_ssize_t, num: cython.Py_ssize_t, offs: cython.longlong[:],
                  caplens: cython.longlong[:], wirelens: cython.longlong[:], ts: cython.longlong[:],
                  vlans: cython.longlong[:]) -> tuple:
    """Index the frames of one retired ring block (a copy of it in ``buf``).

    ``vlans[i]`` is -1, or tci | tpid << 16 when the kernel moved the frame's
    802.1Q tag into the frame header (the caller puts it back).  Returns the
    (frames indexed, frames skipped).  Loopback packets seen on their way out
    are skipped: the same packet comes back in on the loopback device, and
    counting both would duplicate every message (libpcap does the same).
    A corrupt chain ends the walk early."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, buf)
    else:
        p = buf
    blen: cython.Py_ssize_t = len(buf)
    cap: cython.Py_ssize_t = len(offs)
    pos: cython.Py_ssize_t = first
    n: cython.Py_ssize_t = 0
    nxt: cython.longlong
    nxt_pos: cython.Py_ssize_t
    snap: cython.longlong
    mac: cython.longlong
    status: cython.longlong
    tpid: cython.longlong
    seen: cython.Py_ssize_t = 0
    skipped: cython.Py_ssize_t = 0
    while seen < num and n < cap:
        if pos < 0 or blen - pos < 60:
            break
        seen += 1
        nxt = _u32(p, pos, False)
        snap = _u32(p, pos + 12, False)
        mac = p[pos + 24] | (p[pos + 25] << 8)
        if pos + mac + snap > blen:
            break
        nxt_pos = pos + nxt
        # sockaddr_ll follows the 48-byte header: hatype at +8, pkttype at +10
        if p[pos + 58] == 4 and (p[pos + 56] | (p[pos + 57] << 8)) == 772:
            skipped += 1
            if nxt == 0:
                break
            pos = nxt_pos
            continue
        status = _u32(p, pos + 20, False)
        ts[n] = _u32(p, pos + 4, False) * 1000000000 + _u32(p, pos + 8, False)
        caplens[n] = snap
        wirelens[n] = _u32(p, pos + 16, False)
        offs[n] = pos + mac
        if status & TP_STATUS_VLAN_VALID:
            tpid = p[pos + 36] | (p[pos + 37] << 8)
            if not (status & TP_STATUS_VLAN_TPID_VALID) or tpid == 0:
                tpid = 0x8100
            vlans[n] = (_u32(p, pos + 32, False) & 0xFFFF) | (tpid << 16)
        else:
            vlans[n] = -1
        n += 1
        if nxt == 0:
            break
        pos = nxt_pos
    return n, skipped


def restore_vlans(data: bytes, n: cython.Py_ssize_t, offs: cython.longlong[:], caplens: cython.longlong[:],
                  wirelens: cython.longlong[:], vlans: cython.longlong[:]) -> bytes:
    """Put back the 802.1Q tags the kernel moved into the frame headers (``vlans`` from walk_tpacket3).

    Each tagged frame is appended, tag restored after its two MAC addresses, behind the block's bytes;
    its offset and lengths are updated.  ``data`` itself comes back when no frame had a tag."""
    i: cython.Py_ssize_t
    extra: cython.Py_ssize_t = 0
    for i in range(n):
        if vlans[i] >= 0:
            extra += caplens[i] + 4
    if extra == 0:
        return data
    base: cython.Py_ssize_t = len(data)
    out = bytearray(base + extra)
    out[:base] = data
    pos: cython.Py_ssize_t = base
    o: cython.Py_ssize_t
    cap: cython.Py_ssize_t
    h: cython.Py_ssize_t
    v: cython.longlong
    for i in range(n):
        v = vlans[i]
        if v < 0:
            continue
        o = offs[i]
        cap = caplens[i]
        h = 12 if cap > 12 else cap
        out[pos:pos + h] = data[o:o + h]
        out[pos + h] = (v >> 24) & 255       # TPID, then the TCI
        out[pos + h + 1] = (v >> 16) & 255
        out[pos + h + 2] = (v >> 8) & 255
        out[pos + h + 3] = v & 255
        out[pos + h + 4:pos + cap + 4] = data[o + h:o + cap]
        offs[i] = pos
        caplens[i] = cap + 4
        wirelens[i] += 4
        pos += cap + 4
    return bytes(out)
