"""L2-L4 decoding of packet batches: the agent's hottest loop.

One module on purpose: each protocol is a small function below (Ethernet,
802.1Q/QinQ, MPLS, PPP/PPPoE, SLL/SLL2, IPv4, IPv6 + extension headers, UDP,
TCP, SCTP, GRE, ERSPAN II/III, IP-in-IP, VXLAN), and keeping them in one
compilation unit lets Cython inline them into a single C loop.  The file is
plain Python (Cython "pure Python mode"): ``setup.py`` compiles it when
Cython is present, and the same source runs unchanged as a fallback.

Nothing here allocates per packet.  A batch is one ``bytes`` buffer plus
int64 arrays of record offsets, captured lengths and link types; results go
into a flat int64 array of ``NF`` fields per packet (see ``F_*``) and into a
counters array indexed by ``C_*`` (layers seen, and drop reasons).  Every
read is preceded by an explicit length check, so malformed input becomes a
counted drop reason and never an exception (the pure-Python build would
raise IndexError on a missing check, which the fuzz tests look for).
"""
try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]
if cython.compiled:   # the one definition: decode/layout.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.decode.layout import *  # noqa: F403
else:
    from otus_agent.decode.layout import *  # noqa: F403

# ---- per-packet output fields -------------------------------------------




MAX_TUNNEL_DEPTH = cython.declare(cython.int, 4)
MAX_VLAN_TAGS = cython.declare(cython.int, 4)
MAX_MPLS_LABELS = cython.declare(cython.int, 8)
MAX_IPV6_EXT = cython.declare(cython.int, 8)
VXLAN_PORT = cython.declare(cython.int, 4789)

# ---- counters: layers seen, then drop reasons ---------------------------

# link types (pcap LINKTYPE_* numbers)
LT_NULL = cython.declare(cython.int, 0)
LT_ETHERNET = cython.declare(cython.int, 1)
LT_PPP = cython.declare(cython.int, 9)
LT_RAW_OPENBSD = cython.declare(cython.int, 12)
LT_RAW_BSDOS = cython.declare(cython.int, 14)
LT_PPP_HDLC = cython.declare(cython.int, 50)
LT_PPP_ETHER = cython.declare(cython.int, 51)
LT_RAW = cython.declare(cython.int, 101)
LT_LOOP = cython.declare(cython.int, 108)
LT_SLL = cython.declare(cython.int, 113)
LT_IPV4 = cython.declare(cython.int, 228)
LT_IPV6 = cython.declare(cython.int, 229)
LT_SLL2 = cython.declare(cython.int, 276)

ETH_IPV4 = cython.declare(cython.int, 0x0800)
ETH_IPV6 = cython.declare(cython.int, 0x86DD)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _be16(p: cython.p_uchar, off: cython.Py_ssize_t) -> cython.long:
    return (p[off] << 8) | p[off + 1]


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _be32(p: cython.p_uchar, off: cython.Py_ssize_t) -> cython.longlong:
    return (cython.cast(cython.longlong, p[off]) << 24) | (p[off + 1] << 16) | (p[off + 2] << 8) | p[off + 3]


@cython.cfunc
@cython.exceptval(check=False)
def _drop(out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
          reason: cython.int) -> cython.int:
    out[o + F_STATUS] = ST_DROPPED
    out[o + F_REASON] = reason
    cnt[reason] += 1
    return ST_DROPPED


@cython.cfunc
@cython.exceptval(check=False)
def _ethernet(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
              out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
              flags: cython.int, depth: cython.int) -> cython.int:
    if end - off < 14:
        return _drop(out, o, cnt, C_DROP_TRUNCATED_LINK)
    cnt[C_ETHERNET] += 1
    return _ethertype(p, off + 14, end, _be16(p, off + 12), out, o, cnt, flags, depth)


@cython.cfunc
@cython.exceptval(check=False)
def _ppp(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
         out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
         flags: cython.int, depth: cython.int) -> cython.int:
    """PPP frame, with or without HDLC address/control and protocol compression."""
    proto: cython.long
    if end - off >= 2 and p[off] == 0xFF and p[off + 1] == 0x03:
        off += 2
    if end - off < 1:
        return _drop(out, o, cnt, C_DROP_PPP_BAD)
    if p[off] & 1:  # compressed one-byte protocol field
        proto = p[off]
        off += 1
    else:
        if end - off < 2:
            return _drop(out, o, cnt, C_DROP_PPP_BAD)
        proto = _be16(p, off)
        off += 2
    cnt[C_PPP] += 1
    if proto == 0x21:
        return _ip(p, off, end, out, o, cnt, flags, depth)
    if proto == 0x57:
        return _ip(p, off, end, out, o, cnt, flags, depth)
    cnt[C_NON_IP] += 1
    out[o + F_STATUS] = ST_NON_IP
    return ST_NON_IP


@cython.cfunc
@cython.exceptval(check=False)
def _ethertype(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
               etype: cython.long, out: cython.longlong[:], o: cython.Py_ssize_t,
               cnt: cython.longlong[:], flags: cython.int, depth: cython.int) -> cython.int:
    """Follow VLAN tags, MPLS labels and PPPoE down to IP."""
    tags: cython.int = 0
    labels: cython.int
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if tags >= MAX_VLAN_TAGS:
            return _drop(out, o, cnt, C_DROP_VLAN_TOO_DEEP)
        if end - off < 4:
            return _drop(out, o, cnt, C_DROP_VLAN_TRUNCATED)
        if out[o + F_VLAN] < 0:
            out[o + F_VLAN] = _be16(p, off) & 0x0FFF
        cnt[C_VLAN] += 1
        etype = _be16(p, off + 2)
        off += 4
        tags += 1
    if etype == ETH_IPV4 or etype == ETH_IPV6:
        return _ip(p, off, end, out, o, cnt, flags, depth)
    if etype == 0x8847 or etype == 0x8848:
        labels = 0
        while True:
            if end - off < 4 or labels >= MAX_MPLS_LABELS:
                return _drop(out, o, cnt, C_DROP_MPLS_BAD)
            labels += 1
            off += 4
            if p[off - 2] & 1:  # bottom of stack
                break
        cnt[C_MPLS] += 1
        if end - off < 1:
            return _drop(out, o, cnt, C_DROP_MPLS_BAD)
        if (p[off] >> 4) == 4 or (p[off] >> 4) == 6:
            return _ip(p, off, end, out, o, cnt, flags, depth)
        cnt[C_NON_IP] += 1
        out[o + F_STATUS] = ST_NON_IP
        return ST_NON_IP
    if etype == 0x8864:  # PPPoE session stage
        if end - off < 8:
            return _drop(out, o, cnt, C_DROP_PPPOE_BAD)
        cnt[C_PPPOE] += 1
        return _ppp(p, off + 6, end, out, o, cnt, flags, depth)
    cnt[C_NON_IP] += 1
    out[o + F_STATUS] = ST_NON_IP
    return ST_NON_IP


@cython.cfunc
@cython.exceptval(check=False)
def _ip(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
        out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
        flags: cython.int, depth: cython.int) -> cython.int:
    if end - off < 1:
        return _drop(out, o, cnt, C_DROP_IPV4_TRUNCATED)
    if (p[off] >> 4) == 6:
        return _ipv6(p, off, end, out, o, cnt, flags, depth)
    return _ipv4(p, off, end, out, o, cnt, flags, depth)


@cython.cfunc
@cython.exceptval(check=False)
def _ipv4(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
          out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
          flags: cython.int, depth: cython.int) -> cython.int:
    ihl: cython.Py_ssize_t
    totlen: cython.Py_ssize_t
    s: cython.ulong
    i: cython.Py_ssize_t
    fo: cython.long
    if end - off < 20:
        return _drop(out, o, cnt, C_DROP_IPV4_TRUNCATED)
    if (p[off] >> 4) != 4:
        return _drop(out, o, cnt, C_DROP_IPV4_BAD_VERSION)
    ihl = (p[off] & 15) * 4
    if ihl < 20:
        return _drop(out, o, cnt, C_DROP_IPV4_BAD_IHL)
    totlen = _be16(p, off + 2)
    if totlen < ihl:
        return _drop(out, o, cnt, C_DROP_IPV4_BAD_TOTAL_LENGTH)
    if totlen > end - off:
        return _drop(out, o, cnt, C_DROP_IPV4_TRUNCATED)
    if flags & FLAG_VERIFY_IPV4_CSUM:
        s = 0
        for i in range(0, ihl, 2):
            s += (p[off + i] << 8) | p[off + i + 1]
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        if s != 0xFFFF:
            return _drop(out, o, cnt, C_DROP_IPV4_BAD_CHECKSUM)
    cnt[C_IPV4] += 1
    out[o + F_IPVER] = 4
    out[o + F_L3OFF] = off
    out[o + F_L3END] = off + totlen
    out[o + F_PROTO] = p[off + 9]
    fo = _be16(p, off + 6)
    if fo & 0x3FFF:  # MF set or non-zero offset
        cnt[C_IPV4_FRAGMENT] += 1
        out[o + F_STATUS] = ST_FRAGMENT
        return ST_FRAGMENT
    return _l4(p, off + ihl, off + totlen, p[off + 9], out, o, cnt, flags, depth)


@cython.cfunc
@cython.exceptval(check=False)
def _ipv6(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
          out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
          flags: cython.int, depth: cython.int) -> cython.int:
    plen: cython.Py_ssize_t
    l3end: cython.Py_ssize_t
    cur: cython.Py_ssize_t
    nh: cython.int
    n: cython.int = 0
    if end - off < 40:
        return _drop(out, o, cnt, C_DROP_IPV6_TRUNCATED)
    if (p[off] >> 4) != 6:
        return _drop(out, o, cnt, C_DROP_IPV6_BAD_VERSION)
    plen = _be16(p, off + 4)
    if plen == 0:
        return _drop(out, o, cnt, C_DROP_IPV6_JUMBOGRAM)
    if 40 + plen > end - off:
        return _drop(out, o, cnt, C_DROP_IPV6_TRUNCATED)
    l3end = off + 40 + plen
    cnt[C_IPV6] += 1
    out[o + F_IPVER] = 6
    out[o + F_L3OFF] = off
    out[o + F_L3END] = l3end
    nh = p[off + 6]
    cur = off + 40
    while True:
        if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 51:
            n += 1
            if n > MAX_IPV6_EXT or l3end - cur < 8:
                return _drop(out, o, cnt, C_DROP_IPV6_BAD_EXTENSION)
            if nh == 51:
                plen = (p[cur + 1] + 2) * 4
            else:
                plen = (p[cur + 1] + 1) * 8
            if l3end - cur < plen:
                return _drop(out, o, cnt, C_DROP_IPV6_BAD_EXTENSION)
            nh = p[cur]
            cur += plen
        elif nh == 44:
            n += 1
            if n > MAX_IPV6_EXT or l3end - cur < 8:
                return _drop(out, o, cnt, C_DROP_IPV6_BAD_EXTENSION)
            if _be16(p, cur + 2) & 0xFFF9:  # offset != 0 or M set: a real fragment
                cnt[C_IPV6_FRAGMENT] += 1
                out[o + F_STATUS] = ST_FRAGMENT
                out[o + F_FRAGHDR] = cur
                out[o + F_PROTO] = p[cur]
                return ST_FRAGMENT
            nh = p[cur]  # atomic fragment (RFC 6946): process as a whole packet
            cur += 8
        else:
            break
    return _l4(p, cur, l3end, nh, out, o, cnt, flags, depth)


@cython.cfunc
@cython.exceptval(check=False)
def _l4(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t, proto: cython.int,
        out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
        flags: cython.int, depth: cython.int) -> cython.int:
    ulen: cython.Py_ssize_t
    doff: cython.Py_ssize_t
    cur: cython.Py_ssize_t
    clen: cython.Py_ssize_t
    out[o + F_PROTO] = proto
    out[o + F_L4OFF] = off
    if proto == 17:
        if end - off < 8:
            return _drop(out, o, cnt, C_DROP_UDP_TRUNCATED)
        ulen = _be16(p, off + 4)
        if ulen < 8:
            return _drop(out, o, cnt, C_DROP_UDP_BAD_LENGTH)
        if ulen > end - off:
            return _drop(out, o, cnt, C_DROP_UDP_TRUNCATED)
        cnt[C_UDP] += 1
        out[o + F_SPORT] = _be16(p, off)
        out[o + F_DPORT] = _be16(p, off + 2)
        out[o + F_PAYOFF] = off + 8
        out[o + F_PAYLEN] = ulen - 8
        if (flags & FLAG_DECODE_VXLAN) and out[o + F_DPORT] == VXLAN_PORT and ulen >= 8 + 8 + 14 \
                and (p[off + 8] & 0x08):
            if depth >= MAX_TUNNEL_DEPTH:
                return _drop(out, o, cnt, C_DROP_TUNNEL_TOO_DEEP)
            cnt[C_VXLAN] += 1
            out[o + F_TUNNEL] |= TUN_VXLAN
            out[o + F_VLAN] = -1
            return _ethernet(p, off + 16, off + ulen, out, o, cnt, flags, depth + 1)
        out[o + F_STATUS] = ST_L4
        return ST_L4
    if proto == 6:
        if end - off < 20:
            return _drop(out, o, cnt, C_DROP_TCP_TRUNCATED)
        doff = (p[off + 12] >> 4) * 4
        if doff < 20:
            return _drop(out, o, cnt, C_DROP_TCP_BAD_OFFSET)
        if doff > end - off:
            return _drop(out, o, cnt, C_DROP_TCP_TRUNCATED)
        cnt[C_TCP] += 1
        out[o + F_SPORT] = _be16(p, off)
        out[o + F_DPORT] = _be16(p, off + 2)
        out[o + F_TCPSEQ] = _be32(p, off + 4)
        out[o + F_TCPACK] = _be32(p, off + 8)
        out[o + F_TCPFLAGS] = ((p[off + 12] & 1) << 8) | p[off + 13]
        out[o + F_PAYOFF] = off + doff
        out[o + F_PAYLEN] = end - off - doff
        out[o + F_STATUS] = ST_L4
        return ST_L4
    if proto == 132:
        if end - off < 12:
            return _drop(out, o, cnt, C_DROP_SCTP_TRUNCATED)
        cur = off + 12
        while end - cur >= 4:
            clen = _be16(p, cur + 2)
            if clen < 4 or clen > end - cur:
                return _drop(out, o, cnt, C_DROP_SCTP_BAD_CHUNK)
            if p[cur] == 0:
                cnt[C_SCTP_DATA_CHUNKS] += 1
            cur += (clen + 3) & ~3
        cnt[C_SCTP] += 1
        out[o + F_SPORT] = _be16(p, off)
        out[o + F_DPORT] = _be16(p, off + 2)
        out[o + F_PAYOFF] = off + 12
        out[o + F_PAYLEN] = end - off - 12
        out[o + F_STATUS] = ST_L4
        return ST_L4
    if proto == 47:
        return _gre(p, off, end, out, o, cnt, flags, depth)
    if proto == 4 or proto == 41:
        if depth >= MAX_TUNNEL_DEPTH:
            return _drop(out, o, cnt, C_DROP_TUNNEL_TOO_DEEP)
        cnt[C_IPIP] += 1
        out[o + F_TUNNEL] |= TUN_IPIP
        if proto == 4:
            return _ipv4(p, off, end, out, o, cnt, flags, depth + 1)
        return _ipv6(p, off, end, out, o, cnt, flags, depth + 1)
    if proto == 1 or proto == 58:
        cnt[C_ICMP] += 1
    else:
        cnt[C_OTHER_L4] += 1
    out[o + F_STATUS] = ST_OTHER_IP
    return ST_OTHER_IP


@cython.cfunc
@cython.exceptval(check=False)
def _gre(p: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t,
         out: cython.longlong[:], o: cython.Py_ssize_t, cnt: cython.longlong[:],
         flags: cython.int, depth: cython.int) -> cython.int:
    """GRE v0 (RFC 2784/2890) and v1 (PPTP), carrying IP, Ethernet, PPP or ERSPAN."""
    fl: cython.long
    proto: cython.long
    hlen: cython.Py_ssize_t
    if depth >= MAX_TUNNEL_DEPTH:
        return _drop(out, o, cnt, C_DROP_TUNNEL_TOO_DEEP)
    if end - off < 4:
        return _drop(out, o, cnt, C_DROP_GRE_BAD)
    fl = _be16(p, off)
    proto = _be16(p, off + 2)
    if (fl & 7) == 0:
        if fl & 0x4000:  # source routing (RFC 1701): obsolete, not decoded
            return _drop(out, o, cnt, C_DROP_GRE_BAD)
        hlen = 4
        if fl & 0x8000:
            hlen += 4
        if fl & 0x2000:
            hlen += 4
        if fl & 0x1000:
            hlen += 4
    elif (fl & 7) == 1:
        hlen = 8
        if fl & 0x1000:
            hlen += 4
        if fl & 0x0080:
            hlen += 4
    else:
        return _drop(out, o, cnt, C_DROP_GRE_BAD)
    if end - off < hlen:
        return _drop(out, o, cnt, C_DROP_GRE_BAD)
    cnt[C_GRE] += 1
    out[o + F_TUNNEL] |= TUN_GRE
    out[o + F_VLAN] = -1
    off += hlen
    if proto == ETH_IPV4 or proto == ETH_IPV6:
        return _ip(p, off, end, out, o, cnt, flags, depth + 1)
    if proto == 0x6558:
        return _ethernet(p, off, end, out, o, cnt, flags, depth + 1)
    if proto == 0x880B:
        return _ppp(p, off, end, out, o, cnt, flags, depth + 1)
    if proto == 0x88BE:  # ERSPAN type II (type I when no sequence number)
        if fl & 0x1000:
            if end - off < 8:
                return _drop(out, o, cnt, C_DROP_ERSPAN_BAD)
            off += 8
        cnt[C_ERSPAN] += 1
        out[o + F_TUNNEL] |= TUN_ERSPAN
        return _ethernet(p, off, end, out, o, cnt, flags, depth + 1)
    if proto == 0x22EB:  # ERSPAN type III, optional 8-byte platform sub-header
        if end - off < 12:
            return _drop(out, o, cnt, C_DROP_ERSPAN_BAD)
        hlen = 12
        if p[off + 11] & 1:
            hlen += 8
        if end - off < hlen:
            return _drop(out, o, cnt, C_DROP_ERSPAN_BAD)
        cnt[C_ERSPAN] += 1
        out[o + F_TUNNEL] |= TUN_ERSPAN
        return _ethernet(p, off + hlen, end, out, o, cnt, flags, depth + 1)
    cnt[C_NON_IP] += 1
    out[o + F_STATUS] = ST_NON_IP
    return ST_NON_IP


@cython.cfunc
@cython.exceptval(check=False)
def _decode_one(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t,
                link: cython.long, out: cython.longlong[:], o: cython.Py_ssize_t,
                cnt: cython.longlong[:], flags: cython.int) -> cython.int:
    k: cython.int
    fam: cython.long
    proto: cython.long
    for k in range(NF):
        out[o + k] = 0
    out[o + F_VLAN] = -1
    cnt[C_PACKETS] += 1
    if link == LT_ETHERNET:
        return _ethernet(p, start, end, out, o, cnt, flags, 0)
    if link == LT_RAW or link == LT_IPV4 or link == LT_IPV6 or link == LT_RAW_OPENBSD \
            or link == LT_RAW_BSDOS:
        cnt[C_RAW_IP] += 1
        return _ip(p, start, end, out, o, cnt, flags, 0)
    if link == LT_SLL:
        if end - start < 16:
            return _drop(out, o, cnt, C_DROP_TRUNCATED_LINK)
        cnt[C_SLL] += 1
        proto = _be16(p, start + 14)
        if proto == 0x0004 or proto == 0x0001:  # 802.2 LLC / Novell 802.3: not IP
            cnt[C_NON_IP] += 1
            out[o + F_STATUS] = ST_NON_IP
            return ST_NON_IP
        return _ethertype(p, start + 16, end, proto, out, o, cnt, flags, 0)
    if link == LT_SLL2:
        if end - start < 20:
            return _drop(out, o, cnt, C_DROP_TRUNCATED_LINK)
        cnt[C_SLL2] += 1
        return _ethertype(p, start + 20, end, _be16(p, start), out, o, cnt, flags, 0)
    if link == LT_PPP or link == LT_PPP_HDLC:
        return _ppp(p, start, end, out, o, cnt, flags, 0)
    if link == LT_PPP_ETHER:
        if end - start < 6:
            return _drop(out, o, cnt, C_DROP_PPPOE_BAD)
        cnt[C_PPPOE] += 1
        return _ppp(p, start + 6, end, out, o, cnt, flags, 0)
    if link == LT_NULL or link == LT_LOOP:
        if end - start < 4:
            return _drop(out, o, cnt, C_DROP_TRUNCATED_LINK)
        cnt[C_NULL_LOOP] += 1
        fam = p[start] | p[start + 3]  # address family in either byte order
        if fam == 2 or fam == 24 or fam == 28 or fam == 30:
            return _ip(p, start + 4, end, out, o, cnt, flags, 0)
        cnt[C_NON_IP] += 1
        out[o + F_STATUS] = ST_NON_IP
        return ST_NON_IP
    return _drop(out, o, cnt, C_DROP_UNSUPPORTED_LINKTYPE)


def decode_batch(buf: bytes, n: cython.Py_ssize_t, offs: cython.longlong[:],
                 caplens: cython.longlong[:], links: cython.longlong[:],
                 out: cython.longlong[:], cnt: cython.longlong[:],
                 flags: cython.int) -> cython.Py_ssize_t:
    """Decode ``n`` packets of ``buf``; return how many reached L4 (ST_L4)."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, buf)
    else:
        p = buf
    blen: cython.Py_ssize_t = len(buf)
    i: cython.Py_ssize_t
    start: cython.Py_ssize_t
    end: cython.Py_ssize_t
    ok: cython.Py_ssize_t = 0
    if n * NF > len(out) or n > len(offs) or n > len(caplens) \
            or n > len(links) or len(cnt) < NCOUNTERS:
        raise ValueError("decode_batch: arrays smaller than the batch")
    for i in range(n):
        start = offs[i]
        end = start + caplens[i]
        if start < 0 or end < start or end > blen:
            cnt[C_PACKETS] += 1
            _drop(out, i * NF, cnt, C_DROP_BAD_RECORD)
            continue
        if _decode_one(p, start, end, links[i], out, i * NF, cnt, flags) == ST_L4:
            ok += 1
    return ok


def ipv4_header_checksum(buf: bytes, off: cython.Py_ssize_t, ihl: cython.Py_ssize_t) -> cython.long:
    """One's-complement checksum of an IPv4 header whose checksum field is zero."""
    s: cython.ulong = 0
    i: cython.Py_ssize_t
    if off < 0 or ihl < 0 or ihl % 2 or off + ihl > len(buf):
        raise ValueError("ipv4_header_checksum: header outside buffer")
    for i in range(0, ihl, 2):
        s += (buf[off + i] << 8) | buf[off + i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


