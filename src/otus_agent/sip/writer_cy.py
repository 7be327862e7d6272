"""SIP over UDP with no Python object per message: decoded batch in, JSON lines out.

The general path builds a ``Datagram`` per packet, dispatches it through the
SIP stage, makes a record dict and serialises it.  For the common case -- a
UDP datagram on a SIP port (or one that looks like SIP) whose message the fast
scanner accepts -- this lane writes the very same JSON bytes straight from the
scanner's offsets into one buffer.  Everything else (TCP, SCTP, fragments,
keep-alives, messages the scanner leaves to the full parser) stops the lane:
it returns the packet's index, the caller hands that packet to the general
path and resumes the lane after it, so records keep the packets' order.
Output is byte-for-byte what ``orjson.dumps(fast_sip_record(...))`` gives; a
test compares both over the corpus and generated workloads.

Compiled by Cython (setup.py); the pipeline uses the lane only when compiled.
"""
import socket

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]
if cython.compiled:   # the one definition: decode/layout.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.decode.layout import (
        F_DPORT,
        F_IPVER,
        F_L3OFF,
        F_PAYLEN,
        F_PAYOFF,
        F_PROTO,
        F_SPORT,
        F_STATUS,
        F_TCPFLAGS,
        F_TCPSEQ,
        NF,
        ST_FRAGMENT,
        ST_L4,
    )
else:
    from otus_agent.decode.layout import (
        F_DPORT,
        F_IPVER,
        F_L3OFF,
        F_PAYLEN,
        F_PAYOFF,
        F_PROTO,
        F_SPORT,
        F_STATUS,
        F_TCPFLAGS,
        NF,
        ST_FRAGMENT,
        ST_L4,
    )
if cython.compiled:   # the one definition: sip/slots.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.sip.slots import *  # noqa: F403
else:
    from otus_agent.sip.slots import *  # noqa: F403
if cython.compiled:   # the one looks_like_sip (sip/scan_cy.pxd)
    from cython.cimports.otus_agent.sip.scan_cy import _looks_like_sip
else:
    from otus_agent.sip.scan_cy import _looks_like_sip
if cython.compiled:   # the one fingerprint hash (sip/fingerprint_cy.pxd), over the message in place
    from cython.cimports.otus_agent.sip.fingerprint_cy import _fnv, _fnv_num, _hex, _sep, _start
else:
    from otus_agent.sip.fingerprint_cy import _fnv, _fnv_num, _hex, _sep, _start
from orjson import dumps

from otus_agent.sip.identity import FRAGMENTS, ROOM
from otus_agent.sip.sdp_cy import sdp_from_body

FLUSH_BYTES = cython.declare(cython.Py_ssize_t, 64 << 10)
NMETHODS = cython.declare(cython.int, 14)
METHODS = (b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"REGISTER", b"PRACK", b"SUBSCRIBE", b"NOTIFY",
           b"PUBLISH", b"INFO", b"REFER", b"MESSAGE", b"UPDATE")
# counters: [messages, requests, responses, 0xx..6xx (7), per method (NMETHODS)]
C_MSG = cython.declare(cython.int, 0)
C_REQ = cython.declare(cython.int, 1)
C_RESP = cython.declare(cython.int, 2)
C_CLASS = cython.declare(cython.int, 3)
C_METHOD = cython.declare(cython.int, 10)
NCOUNT = cython.declare(cython.int, 24)
COUNTERS = {"messages": C_MSG, "requests": C_REQ, "responses": C_RESP, "classes": C_CLASS, "methods": C_METHOD,
            "size": NCOUNT}
HEX = b"0123456789abcdef"
IDENT_ROOM = cython.declare(cython.Py_ssize_t, ROOM)    # bytes kept free for a record's identity keys



@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _lit(q: cython.p_uchar, k: cython.Py_ssize_t, lit: bytes) -> cython.Py_ssize_t:
    s: cython.p_uchar
    if cython.compiled:
        s = cython.cast(cython.p_uchar, lit)
    else:
        s = lit
    j: cython.Py_ssize_t
    for j in range(len(lit)):
        q[k + j] = s[j]
    return k + len(lit)


@cython.cfunc
@cython.exceptval(check=False)
def _int(q: cython.p_uchar, k: cython.Py_ssize_t, v: cython.longlong) -> cython.Py_ssize_t:
    tmp: cython.uchar[24]
    n: cython.int = 0
    if v < 0:
        q[k] = 45  # '-'
        k += 1
        v = -v
    if v == 0:
        q[k] = 48
        return k + 1
    while v > 0:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    while n > 0:
        n -= 1
        q[k] = tmp[n]
        k += 1
    return k


@cython.cfunc
@cython.exceptval(-2, check=True)
def _str(q: cython.p_uchar, k: cython.Py_ssize_t, p: cython.p_uchar, a: cython.longlong,
         b: cython.longlong) -> cython.Py_ssize_t:
    """A JSON string of p[a:b] escaped as orjson escapes it; null when a < 0; -1 for non-ASCII."""
    j: cython.longlong
    c: cython.uchar
    if a < 0:
        return _lit(q, k, b"null")
    q[k] = 34
    k += 1
    for j in range(a, b):
        c = p[j]
        if c >= 0x80:
            return -1
        if c == 34 or c == 92:
            q[k] = 92
            q[k + 1] = c
            k += 2
        elif c < 0x20:
            q[k] = 92
            if c == 8:
                q[k + 1] = 98
                k += 2
            elif c == 9:
                q[k + 1] = 116
                k += 2
            elif c == 10:
                q[k + 1] = 110
                k += 2
            elif c == 12:
                q[k + 1] = 102
                k += 2
            elif c == 13:
                q[k + 1] = 114
                k += 2
            else:
                k = _lit(q, k + 1, b"u00")
                q[k] = HEX[c >> 4]
                q[k + 1] = HEX[c & 15]
                k += 2
        else:
            q[k] = c
            k += 1
    q[k] = 34
    return k + 1


@cython.cfunc
@cython.exceptval(check=False)
def _ipv4(q: cython.p_uchar, k: cython.Py_ssize_t, p: cython.p_uchar, at: cython.Py_ssize_t) -> cython.Py_ssize_t:
    i: cython.int
    q[k] = 34
    k += 1
    for i in range(4):
        if i:
            q[k] = 46
            k += 1
        k = _int(q, k, p[at + i])
    q[k] = 34
    return k + 1


@cython.cfunc
def _addr(v4: cython.p_uchar, at: cython.int, text: bytes) -> bytes:
    """An address as text (sip/identity.py's FRAGMENTS key): IPv4 from its 4 bytes at v4 + at, else ``text``."""
    tmp: cython.uchar[24]
    if v4 == cython.NULL:
        return text
    t: cython.p_uchar = cython.address(tmp[0])
    n: cython.Py_ssize_t = _ipv4(t, 0, v4, at)
    return t[1:n - 1]


MAX_MEDIA = cython.declare(cython.int, 32)
MAX_RTPMAP = cython.declare(cython.int, 64)


@cython.cfunc
@cython.exceptval(check=False)
def _tokens(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, t0: cython.p_longlong,
            t1: cython.p_longlong, most: cython.int) -> cython.int:
    """Space-separated tokens of p[a:b] (str.split() on text with no other whitespace)."""
    n: cython.int = 0
    i: cython.Py_ssize_t = a
    while i < b and n < most:
        while i < b and p[i] == 32:
            i += 1
        if i >= b:
            break
        t0[n] = i
        while i < b and p[i] != 32:
            i += 1
        t1[n] = i
        n += 1
    return n


@cython.cfunc
@cython.exceptval(check=False)
def _until_slash(p: cython.p_uchar, a: cython.longlong, b: cython.longlong) -> cython.longlong:
    i: cython.longlong
    for i in range(a, b):
        if p[i] == 47:
            return i
    return b


@cython.cfunc
@cython.exceptval(-2, check=True)
def _close_media(q: cython.p_uchar, k: cython.Py_ssize_t, p: cython.p_uchar, has_conn: cython.int,
                 c0: cython.longlong, c1: cython.longlong, conn_first: cython.bint, nrtp: cython.int,
                 rk0: cython.p_longlong, rk1: cython.p_longlong, rv0: cython.p_longlong,
                 rv1: cython.p_longlong) -> cython.Py_ssize_t:
    j: cython.int
    if has_conn and conn_first:
        k = _lit(q, k, b',"connection":')
        k = _str(q, k, p, c0, c1)
        if k < 0:
            return -1
    if nrtp > 0:
        k = _lit(q, k, b',"rtpmap":{')
        for j in range(nrtp):
            if j:
                q[k] = 44
                k += 1
            k = _str(q, k, p, rk0[j], rk1[j])
            if k < 0:
                return -1
            q[k] = 58
            k = _str(q, k + 1, p, rv0[j], rv1[j])
            if k < 0:
                return -1
        q[k] = 125
        k += 1
    if has_conn and not conn_first:
        k = _lit(q, k, b',"connection":')
        k = _str(q, k, p, c0, c1)
        if k < 0:
            return -1
    q[k] = 125
    return k + 1


@cython.cfunc
@cython.exceptval(-2, check=True)
def _sdp(q: cython.p_uchar, k: cython.Py_ssize_t, p: cython.p_uchar, a: cython.Py_ssize_t,
         b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """sdp.parse_sdp(p[a:b]) as JSON; -1 when the body needs the Python parser (non-ASCII, tabs, ...)."""
    i: cython.Py_ssize_t
    ls: cython.Py_ssize_t
    le: cython.Py_ssize_t
    ve: cython.Py_ssize_t
    c: cython.uchar
    t0: cython.longlong[40]
    t1: cython.longlong[40]
    rk0: cython.longlong[64]
    rk1: cython.longlong[64]
    rv0: cython.longlong[64]
    rv1: cython.longlong[64]
    nt: cython.int
    j: cython.int
    m: cython.int
    nmedia: cython.int = 0
    cur: cython.bint = False
    has_conn: cython.int = 0
    mc0: cython.longlong = -1
    mc1: cython.longlong = -1
    conn_first: cython.bint = False
    nrtp: cython.int = 0
    sconn: cython.bint = False
    sc0: cython.longlong = -1
    sc1: cython.longlong = -1
    origin: cython.bint = False
    o0: cython.longlong[4]
    o1: cython.longlong[4]
    e: cython.longlong
    if b - a < 2 or p[a] != 118 or p[a + 1] != 61:
        return _lit(q, k, b"null")
    for i in range(a, b):
        c = p[i]
        if c >= 0x80 or (c < 0x20 and c != 10 and c != 13):
            return -1
        if c == 13 and i + 1 < b and p[i + 1] != 10 and p[i + 1] != 13:
            return -1                   # a CR inside a line: whitespace to str.split()
    k = _lit(q, k, b'{"media":[')
    ls = a
    while ls < b:
        le = ls
        while le < b and p[le] != 10:
            le += 1
        if le - ls >= 2 and p[ls + 1] == 61:
            ve = le
            while ve > ls + 2 and p[ve - 1] == 13:
                ve -= 1
            c = p[ls]
            if c == 109:      # m=
                if cur:
                    k = _close_media(q, k, p, has_conn, mc0, mc1, conn_first, nrtp, rk0, rk1, rv0, rv1)
                    if k < 0:
                        return -1
                    cur = False
                if nmedia >= MAX_MEDIA:
                    pass
                else:
                    nt = _tokens(p, ls + 2, ve, t0, t1, 40)
                    if nt >= 40:
                        return -1
                    if nt >= 3:
                        if nmedia:
                            q[k] = 44
                            k += 1
                        k = _lit(q, k, b'{"type":')
                        k = _str(q, k, p, t0[0], t1[0])
                        k = _lit(q, k, b',"port":')
                        e = _until_slash(p, t0[1], t1[1])
                        if 0 < e - t0[1] <= 5:
                            for j in range(t0[1], e):
                                if not 48 <= p[j] <= 57:
                                    break
                            else:
                                num: cython.longlong = 0
                                for j in range(t0[1], e):
                                    num = num * 10 + p[j] - 48
                                k = _int(q, k, num)
                                e = -1
                        if e >= 0:
                            k = _lit(q, k, b"null")
                        k = _lit(q, k, b',"proto":')
                        k = _str(q, k, p, t0[2], t1[2])
                        k = _lit(q, k, b',"payloads":[')
                        for j in range(3, nt):
                            if j > 3:
                                q[k] = 44
                                k += 1
                            k = _str(q, k, p, t0[j], t1[j])
                        q[k] = 93
                        k += 1
                        if k < 0:
                            return -1
                        nmedia += 1
                        cur = True
                        has_conn = 0
                        nrtp = 0
            elif c == 99:     # c=
                nt = _tokens(p, ls + 2, ve, t0, t1, 3)
                if cur:
                    if not has_conn:
                        conn_first = nrtp == 0
                    has_conn = 1
                    if nt >= 3:
                        mc0, mc1 = t0[2], _until_slash(p, t0[2], t1[2])
                    else:
                        mc0 = mc1 = -1
                elif nt >= 3:
                    sconn, sc0, sc1 = True, t0[2], _until_slash(p, t0[2], t1[2])
                else:
                    sconn = False
            elif c == 111:    # o=
                nt = _tokens(p, ls + 2, ve, t0, t1, 6)
                if nt >= 6:
                    origin = True
                    o0[0], o1[0], o0[1], o1[1] = t0[0], t1[0], t0[1], t1[1]
                    o0[2], o1[2], o0[3], o1[3] = t0[2], t1[2], t0[5], t1[5]
            elif c == 97 and cur and ve - ls - 2 >= 7 and p[ls + 2] == 114 and p[ls + 3] == 116 and \
                    p[ls + 4] == 112 and p[ls + 5] == 109 and p[ls + 6] == 97 and p[ls + 7] == 112 and p[ls + 8] == 58:
                e = -1
                for i in range(ls + 2, ve):
                    if p[i] == 32:
                        e = i
                        break
                if e > ls + 2 + 7:
                    if nrtp >= MAX_RTPMAP:
                        return -1
                    rk0[nrtp], rk1[nrtp] = ls + 9, e
                    for m in range(nrtp):          # a repeated payload type: the Python parser's dict
                        if rk1[m] - rk0[m] == e - ls - 9:
                            for j in range(e - ls - 9):
                                if p[rk0[m] + j] != p[ls + 9 + j]:
                                    break
                            else:
                                return -1
                    i = e + 1
                    while i < ve and p[i] == 32:
                        i += 1
                    j = ve
                    while j > i and p[j - 1] == 32:
                        j -= 1
                    rv0[nrtp], rv1[nrtp] = i, j
                    nrtp += 1
        ls = le + 1
    if cur:
        k = _close_media(q, k, p, has_conn, mc0, mc1, conn_first, nrtp, rk0, rk1, rv0, rv1)
        if k < 0:
            return -1
    q[k] = 93
    k += 1
    if origin:
        k = _lit(q, k, b',"origin":{"username":')
        k = _str(q, k, p, o0[0], o1[0])
        k = _lit(q, k, b',"session_id":')
        k = _str(q, k, p, o0[1], o1[1])
        k = _lit(q, k, b',"session_version":')
        k = _str(q, k, p, o0[2], o1[2])
        k = _lit(q, k, b',"address":')
        k = _str(q, k, p, o0[3], o1[3])
        q[k] = 125
        k += 1
    if sconn:
        k = _lit(q, k, b',"connection":')
        k = _str(q, k, p, sc0, sc1)
    q[k] = 125
    return k + 1


@cython.cfunc
@cython.exceptval(check=False)
def _is_app_sdp(p: cython.p_uchar, a: cython.longlong, b: cython.longlong) -> cython.int:
    """1: 'application/sdp' (case-insensitive, before any ';', spaces around); 2: multipart/...; 0: other."""
    e: cython.longlong = a
    lit = b"application/sdp"
    lit2 = b"multipart/"
    j: cython.int
    c: cython.uchar
    while e < b and p[e] != 59:
        e += 1
    while a < e and (p[a] == 32 or p[a] == 9):
        a += 1
    while e > a and (p[e - 1] == 32 or p[e - 1] == 9):
        e -= 1
    if e - a >= 10:
        for j in range(10):
            c = p[a + j]
            if 65 <= c <= 90:
                c += 32
            if c != lit2[j]:
                break
        else:
            return 2
    if e - a != 15:
        return 0
    for j in range(15):
        c = p[a + j]
        if 65 <= c <= 90:
            c += 32
        if c != lit[j]:
            return 0
    return 1


@cython.cfunc
@cython.exceptval(check=False)
def _method(p: cython.p_uchar, ml: cython.longlong) -> cython.int:
    """Index of the method p[0:ml] in METHODS, -1 if it is another."""
    m: cython.int
    j: cython.int
    q: cython.p_uchar
    for m in range(NMETHODS):
        lit = METHODS[m]
        if len(lit) != ml:
            continue
        if cython.compiled:
            q = cython.cast(cython.p_uchar, lit)
        else:
            q = lit
        for j in range(ml):
            if p[j] != q[j]:
                break
        else:
            return m
    return -1


@cython.cclass
class UdpLane:
    """One per SIP stage.  ``run`` writes records into its buffer; ``take`` hands them over."""
    ports: cython.uchar[:]
    heuristic: cython.bint
    extra: bytes
    want_pairs: cython.bint
    scanner: object
    so: cython.longlong[:]
    obuf: bytearray
    olen = cython.declare(cython.Py_ssize_t, visibility="readonly")   # bytes written, not yet taken
    counts: cython.longlong[:]
    counts_arr = cython.declare(object, visibility="readonly")
    starts: list          # per record (start, end, key start, key end) when pairs are wanted
    full = cython.declare(cython.bint, visibility="readonly")   # run stopped early: take() and go on
    tracker: object       # a DialogTracker (call summaries on) or None
    tcp: object           # the SIP stage's TcpReassembler (pure ACKs stay in the lane) or None
    tcp_wire: dict        # its streams by wire key

    def __init__(self, scanner, ports, heuristic: bool, extra: bytes = b"", want_pairs: bool = False,
                 tracker=None, tcp=None):
        if not cython.compiled:    # C arrays and pointers throughout: no pure-Python twin
            raise RuntimeError("the SIP lane exists only in the compiled build")
        from array import array
        table = bytearray(65536)
        for port in ports:
            table[port] = 1
        self.ports = table
        self.heuristic = heuristic
        self.extra = extra
        self.want_pairs = want_pairs
        self.scanner = scanner
        self.so = scanner.arr
        self.obuf = bytearray(1 << 16)
        self.olen = 0
        self.counts_arr = array("q", bytes(8 * NCOUNT))
        self.counts = self.counts_arr
        self.starts = []
        self.tracker = tracker
        self.tcp = tcp
        self.tcp_wire = tcp.by_wire if tcp is not None else {}

    def take(self):
        """(JSON lines, [(key, record)] or None) written since the last take."""
        q: cython.p_uchar
        if cython.compiled:
            q = cython.cast(cython.p_uchar, self.obuf)
            data = q[:self.olen]
        else:
            data = bytes(self.obuf[:self.olen])
        pairs = None
        if self.want_pairs:
            pairs = [(data[k0:k1] if key is None else key, data[s:e]) for s, e, k0, k1, key in self.starts]
            self.starts = []
        self.olen = 0
        return data, pairs

    def counters(self) -> list:
        return list(self.counts_arr)

    def run(self, buf: bytes, dec: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
            start: cython.Py_ssize_t) -> cython.Py_ssize_t:
        """Handle packets start..n-1 until one needs the general path; return its index (n: all done)."""
        i: cython.Py_ssize_t
        base: cython.Py_ssize_t
        pay: cython.Py_ssize_t
        plen: cython.Py_ssize_t
        st: cython.longlong
        bp: cython.p_uchar
        if cython.compiled:
            bp = cython.cast(cython.p_uchar, buf)
        else:
            bp = buf
        self.full = False
        for i in range(start, n):
            if self.olen >= FLUSH_BYTES:
                self.full = True       # small blocks: no large allocations (page faults) per batch
                return i
            base = i * NF
            st = dec[base + F_STATUS]
            if st == ST_FRAGMENT:
                return i
            if st != ST_L4:
                continue
            pay = dec[base + F_PAYOFF]
            plen = dec[base + F_PAYLEN]
            if dec[base + F_PROTO] != 17:
                # TCP with no SYN, FIN or RST: a pure ACK (the stream's bookkeeping only), or one whole
                # message in order on an idle stream (SipStage._tcp's common case); else the general path
                if dec[base + F_PROTO] != 6 or dec[base + F_TCPFLAGS] & 7 or self.tcp is None:
                    return i
                if plen == 0:
                    if not self._ack(bp, dec, base, ts[i]):
                        return i
                elif not self._tcp_message(buf, bp, dec, base, pay, plen, ts[i]):
                    return i
                dec[base + F_STATUS] = 255
                continue
            if plen == 0:
                continue
            if not (self.ports[dec[base + F_SPORT]] or self.ports[dec[base + F_DPORT]]):
                if not self.heuristic or not _looks_like_sip(bp + pay if cython.compiled else buf[pay:pay + plen],
                                                             plen):
                    continue           # not SIP: the general path would ignore it too
            c0: cython.uchar = bp[pay]
            if c0 == 13 or c0 == 10 or c0 == 0 or c0 == 32 or c0 == 9:
                return i               # keep-alive or padding: counted by the general path
            if not self._one(buf, bp, dec, base, pay, plen, ts[i]):
                return i
            dec[base + F_STATUS] = 255     # handled: the caller's loop skips it
        return n

    @cython.cfunc
    def _wire(self, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t) -> bytes:
        """tcpstream.wire_key of the packet's stream, straight from its headers."""
        tmp: cython.uchar[36]
        l3: cython.Py_ssize_t = dec[base + F_L3OFF]
        j: cython.int
        n: cython.int
        if dec[base + F_IPVER] == 4:
            for j in range(8):
                tmp[j] = bp[l3 + 12 + j]
            n = 8
        else:
            for j in range(32):
                tmp[j] = bp[l3 + 8 + j]
            n = 32
        sp: cython.longlong = dec[base + F_SPORT]
        dp: cython.longlong = dec[base + F_DPORT]
        tmp[n] = sp >> 8
        tmp[n + 1] = sp & 255
        tmp[n + 2] = dp >> 8
        tmp[n + 3] = dp & 255
        kp: cython.p_uchar = cython.address(tmp[0])
        return kp[:n + 4]

    @cython.cfunc
    def _ack(self, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
             ts: cython.longlong) -> cython.bint:
        """What SipStage._tcp and TcpReassembler.add do for a pure ACK: touch its stream, if followed
        (found by wire_key, no text made); False when the idle-stream timer is due (the general path)."""
        tcp = self.tcp
        last: cython.longlong = tcp.tick_ts
        if ts - last > 1_000_000_000:     # tcpstream.EXPIRE_EVERY_NS
            return False
        s = self.tcp_wire.get(self._wire(bp, dec, base))
        if s is not None:
            tcp.touch(s, ts)
        return True

    @cython.cfunc
    def _tcp_message(self, buf: bytes, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
                     pay: cython.Py_ssize_t, plen: cython.Py_ssize_t, ts: cython.longlong) -> cython.bint:
        """SipStage._tcp's common case without a Datagram: a segment in order on a followed, idle stream
        (nothing buffered or waiting, no WebSocket) that holds exactly one whole message the scanner
        accepts.  Its record, then TcpReassembler.consumed; False leaves the packet untouched."""
        tcp = self.tcp
        last: cython.longlong = tcp.tick_ts
        if ts - last > 1_000_000_000:     # tcpstream.EXPIRE_EVERY_NS
            return False
        s = self.tcp_wire.get(self._wire(bp, dec, base))
        if s is None or s.buf or s.pending or s.state is not None:
            return False
        nxt: cython.longlong = s.next_seq
        if nxt != dec[base + F_TCPSEQ]:
            return False
        if not _looks_like_sip(bp + pay if cython.compiled else buf[pay:pay + plen], plen):
            return False
        if self.scanner.scan_at(buf, pay, plen, True) != 1:
            return False
        o = self.so
        if o[O_BODY] + o[O_CL] != plen:
            return False
        if not self._whole(buf, bp, dec, base, pay, plen, ts, b"tcp"):
            return False
        tcp.consumed(s, plen, ts)
        return True

    def write_scanned(self, data: bytes, ts: cython.longlong, src: bytes, sport: cython.longlong, dst: bytes,
                      dport: cython.longlong, transport: bytes) -> bool:
        """Write the record of the message at the start of ``data``, which this lane's scanner has
        just accepted (the SIP stage's TCP, SCTP, WebSocket and reassembled-UDP paths)."""
        p: cython.p_uchar
        if cython.compiled:
            p = cython.cast(cython.p_uchar, data)
        else:
            p = data
        return self._record(data, p, len(data), ts, cython.NULL, src, dst, sport, dport, transport, data, 0)

    @cython.cfunc
    def _one(self, buf: bytes, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
             pay: cython.Py_ssize_t, plen: cython.Py_ssize_t, ts: cython.longlong) -> cython.bint:
        if self.scanner.scan_at(buf, pay, plen, False) != 1:
            return False
        return self._whole(buf, bp, dec, base, pay, plen, ts, b"udp")

    @cython.cfunc
    def _whole(self, buf: bytes, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
               pay: cython.Py_ssize_t, plen: cython.Py_ssize_t, ts: cython.longlong, transport: bytes) -> cython.bint:
        """The record of the packet's payload, just scanned, with the addresses from its IP header."""
        ipver: cython.longlong = dec[base + F_IPVER]
        l3: cython.Py_ssize_t = dec[base + F_L3OFF]
        if ipver != 4:
            src6 = socket.inet_ntop(socket.AF_INET6, buf[l3 + 8:l3 + 24]).encode()
            dst6 = socket.inet_ntop(socket.AF_INET6, buf[l3 + 24:l3 + 40]).encode()
            return self._record(None, bp + pay, plen, ts, cython.NULL, src6, dst6, dec[base + F_SPORT],
                                dec[base + F_DPORT], transport, buf, pay)
        return self._record(None, bp + pay, plen, ts, bp + l3 + 12, b"", b"", dec[base + F_SPORT],
                            dec[base + F_DPORT], transport, buf, pay)

    @cython.cfunc
    def _record(self, data: object, p: cython.p_uchar, plen: cython.Py_ssize_t, ts: cython.longlong,
                v4: cython.p_uchar, src6: bytes, dst6: bytes, sport: cython.longlong, dport: cython.longlong,
                transport: bytes, whole: bytes, off: cython.Py_ssize_t) -> cython.bint:
        """The JSON record from the scanner's offsets for the message at p (plen bytes; in Python
        terms ``data``, or whole[off:off + plen] when data is None); v4 points at the IPv4 source
        and destination addresses, or is NULL and src6/dst6 hold the addresses as text."""
        o = self.so
        req: cython.bint = o[O_REQ] == 1
        midx: cython.int = -1
        if req:
            midx = _method(p, o[O_M1] - o[O_M0])
            if midx < 0:
                return False           # an unusual method: the general path counts it by name
        elif not 100 <= o[O_STATUS] <= 699:
            return False
        # body / SDP
        bstart: cython.longlong = o[O_BODY]
        cl: cython.longlong = o[O_CL]
        bend: cython.longlong = bstart + cl if cl >= 0 else plen
        if bend > plen:
            return False
        sdp = b"null"
        kind: cython.int = 0
        if o[O_CT0] >= 0 and bend > bstart:
            kind = _is_app_sdp(p, o[O_CT0], o[O_CT1])
            if kind == 2:      # multipart: the Python parser finds the SDP part
                s = sdp_from_body(whole[off + o[O_CT0]:off + o[O_CT1]].decode("latin-1"),
                                  whole[off + bstart:off + bend])
                if s is not None:
                    sdp = dumps(s)
                kind = 0
        # room for the record: escaping grows a byte to 6 at most, SDP JSON stays under 16x its text
        fixed: cython.Py_ssize_t = 16 * bend + 1024 + len(self.extra) + 2 * len(src6) + 2 * len(dst6) + \
            len(transport)
        if FRAGMENTS:     # room for the identity keys after the labels (sip/identity.py)
            fixed += IDENT_ROOM
        need: cython.Py_ssize_t = self.olen + fixed + len(sdp)
        if need > len(self.obuf):
            self.obuf.extend(bytes(max(need - len(self.obuf), len(self.obuf))))
        q: cython.p_uchar
        if cython.compiled:
            q = cython.cast(cython.p_uchar, self.obuf)
        else:
            q = self.obuf
        k: cython.Py_ssize_t = self.olen
        k0: cython.Py_ssize_t = k
        k = _lit(q, k, b'{"v":1,"type":"sip","ts":')
        k = _int(q, k, ts)
        k = _lit(q, k, b',"src_ip":')
        if v4 != cython.NULL:
            k = _ipv4(q, k, v4, 0)
        else:
            k = _str(q, k, src6, 0, len(src6))
        if k < 0:
            return False
        k = _lit(q, k, b',"src_port":')
        k = _int(q, k, sport)
        k = _lit(q, k, b',"dst_ip":')
        if v4 != cython.NULL:
            k = _ipv4(q, k, v4, 4)
        else:
            k = _str(q, k, dst6, 0, len(dst6))
        if k < 0:
            return False
        k = _lit(q, k, b',"dst_port":')
        k = _int(q, k, dport)
        k = _lit(q, k, b',"transport":"')
        k = _lit(q, k, transport)
        q[k] = 34   # the transport's closing quote
        k += 1
        kc0: cython.Py_ssize_t = 0
        kc1: cython.Py_ssize_t = 0
        key = None
        # the message fields; k < 0 after _str: non-ASCII somewhere, the general path decodes it
        # <fields:lane> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        k = _lit(q, k, b',"method":')
        if req:
            k = _str(q, k, p, o[O_M0], o[O_M1])
        else:
            k = _lit(q, k, b"null")
        if k < 0:
            return False
        k = _lit(q, k, b',"status_code":')
        if req:
            k = _lit(q, k, b"null")
        else:
            k = _int(q, k, o[O_STATUS])
        k = _lit(q, k, b',"reason_phrase":')
        if req:
            k = _lit(q, k, b"null")
        else:
            k = _str(q, k, p, o[O_R0], o[O_R1])
        if k < 0:
            return False
        k = _lit(q, k, b',"request_uri":')
        if req:
            k = _str(q, k, p, o[O_U0], o[O_U1])
        else:
            k = _lit(q, k, b"null")
        if k < 0:
            return False
        k = _lit(q, k, b',"call_id":')
        kc0 = k + 1
        k = _str(q, k, p, o[O_CID0], o[O_CID1])
        kc1 = k - 1
        if o[O_CID0] < 0:
            kc0 = kc1 = k
        elif kc1 - kc0 != o[O_CID1] - o[O_CID0]:
            kc0 = kc1 = -1     # escaped in JSON: the key is taken from the message instead
            key = whole[off + o[O_CID0]:off + o[O_CID1]]
        if k < 0:
            return False
        k = _lit(q, k, b',"cseq_num":')
        k = _int(q, k, o[O_CSEQ])
        k = _lit(q, k, b',"cseq_method":')
        k = _str(q, k, p, o[O_CSM0], o[O_CSM1])
        if k < 0:
            return False
        k = _lit(q, k, b',"from_user":')
        k = _str(q, k, p, o[O_FU0], o[O_FU1])
        if k < 0:
            return False
        k = _lit(q, k, b',"from_host":')
        k = _str(q, k, p, o[O_FH0], o[O_FH1])
        if k < 0:
            return False
        k = _lit(q, k, b',"from_tag":')
        k = _str(q, k, p, o[O_FT0], o[O_FT1])
        if k < 0:
            return False
        k = _lit(q, k, b',"to_user":')
        k = _str(q, k, p, o[O_TU0], o[O_TU1])
        if k < 0:
            return False
        k = _lit(q, k, b',"to_host":')
        k = _str(q, k, p, o[O_TH0], o[O_TH1])
        if k < 0:
            return False
        k = _lit(q, k, b',"to_tag":')
        k = _str(q, k, p, o[O_TT0], o[O_TT1])
        if k < 0:
            return False
        k = _lit(q, k, b',"via_branch":')
        k = _str(q, k, p, o[O_VB0], o[O_VB1])
        if k < 0:
            return False
        k = _lit(q, k, b',"user_agent":')
        k = _str(q, k, p, o[O_UA0], o[O_UA1])
        if k < 0:
            return False
        k = _lit(q, k, b',"content_type":')
        k = _str(q, k, p, o[O_CT0], o[O_CT1])
        if k < 0:
            return False
        k = _lit(q, k, b',"correlation_id":')
        if o[O_XC0] >= 0:
            k = _str(q, k, p, o[O_XC0], o[O_XC1])
        else:
            k = _str(q, k, p, o[O_PC0], o[O_PC1])
        if k < 0:
            return False
        k = _lit(q, k, b',"fingerprint":')
        h: cython.ulonglong = _start()
        if req:
            h = _fnv(h, p, o[O_M0], o[O_M1])
        else:
            h = _fnv_num(h, o[O_STATUS])
        h = _fnv(_sep(h), p, o[O_CID0], o[O_CID1])
        h = _fnv_num(_sep(h), o[O_CSEQ])
        h = _fnv(_sep(h), p, o[O_CSM0], o[O_CSM1])
        h = _fnv(_sep(h), p, o[O_VB0], o[O_VB1])
        h = _fnv(_sep(h), p, o[O_FT0], o[O_FT1])
        h = _fnv(_sep(h), p, o[O_TT0], o[O_TT1])
        h = _fnv(_sep(h), p, bstart, bend if bend < bstart + 64 else bstart + 64)
        q[k] = 34
        k = _hex(q, k + 1, h)
        q[k] = 34
        k += 1
        # </fields:lane>
        k = _lit(q, k, b',"sdp":')
        kbeforesdp: cython.Py_ssize_t = k
        if kind == 1:
            k = _sdp(q, k, p, bstart, bend)
            if k < 0:          # unusual SDP text: the Python parser's exact output instead
                s = sdp_from_body(whole[off + o[O_CT0]:off + o[O_CT1]].decode("latin-1"),
                                  whole[off + bstart:off + bend])
                sdp = dumps(s) if s is not None else b"null"
                if self.olen + fixed + len(sdp) > len(self.obuf):
                    return False
                k = _lit(q, kbeforesdp, sdp)
        else:
            k = _lit(q, k, sdp)
        k = _lit(q, k, self.extra)
        # who holds the addresses, and the capture point (sip/identity.py); nothing outside a cluster
        # <fields:lane_identity> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        if FRAGMENTS:
            frags: dict = FRAGMENTS     # typed: a C dict lookup, no bound method
            if len(self.obuf) - k < IDENT_ROOM:
                return False
            frag = frags.get(b"capture")
            if frag is not None:
                k = _lit(q, k, b',"capture":')
                k = _lit(q, k, frag)
            frag = frags.get(_addr(v4, 0, src6))
            if frag is not None:
                k = _lit(q, k, b',"src_k8s":')
                k = _lit(q, k, frag)
            frag = frags.get(_addr(v4, 4, dst6))
            if frag is not None:
                k = _lit(q, k, b',"dst_k8s":')
                k = _lit(q, k, frag)
        # </fields:lane_identity>
        q[k] = 125   # }
        q[k + 1] = 10
        k += 2
        if self.want_pairs:
            self.starts.append((k0, k - 1, kc0, kc1, key))
        self.olen = k
        c = self.counts
        c[C_MSG] += 1
        if req:
            c[C_REQ] += 1
            c[C_METHOD + midx] += 1
        else:
            c[C_RESP] += 1
            c[C_CLASS + o[O_STATUS] // 100] += 1
        if self.tracker is not None:
            self._observe(p, ts, req)
        return True

    @cython.cfunc
    def _observe(self, p: cython.p_uchar, ts: cython.longlong, req: cython.bint) -> cython.int:
        """Feed the dialog tracker from the scanner's offsets (the fields the record just written holds,
        all ASCII) and append the summaries of the calls that ended, after the record: the general path's
        order.  Only the fields the message's kind reads are decoded (DialogTracker.observe_fields)."""
        o = self.so
        if o[O_CID0] < 0 or o[O_CID1] == o[O_CID0] or o[O_CSM0] < 0:
            if not self.tracker.calls:
                return 0       # nothing to expire, nothing to follow: the tracker would do nothing
            cid = None
        else:
            cid = p[o[O_CID0]:o[O_CID1]].decode("latin-1")
        csm = p[o[O_CSM0]:o[O_CSM1]].decode("latin-1") if o[O_CSM0] >= 0 else None
        method = None
        ftag = None
        fuser = None
        tuser = None
        ttag = None
        code: cython.longlong = 0
        invite: cython.bint = False
        ml: cython.longlong
        if req:
            ml = o[O_M1] - o[O_M0]
            invite = ml == 6 and p[o[O_M0]] == 73 and p[o[O_M0] + 1] == 78 and p[o[O_M0] + 2] == 86 and \
                p[o[O_M0] + 3] == 73 and p[o[O_M0] + 4] == 84 and p[o[O_M0] + 5] == 69      # INVITE
            method = p[o[O_M0]:o[O_M1]].decode("latin-1")
            if invite or method == "BYE":
                ftag = p[o[O_FT0]:o[O_FT1]].decode("latin-1") if o[O_FT0] >= 0 else None
            if invite:
                fuser = p[o[O_FU0]:o[O_FU1]].decode("latin-1") if o[O_FU0] >= 0 else None
                tuser = p[o[O_TU0]:o[O_TU1]].decode("latin-1") if o[O_TU0] >= 0 else None
        else:
            code = o[O_STATUS]
        if invite or not req:
            ttag = p[o[O_TT0]:o[O_TT1]].decode("latin-1") if o[O_TT0] >= 0 else None
        ended = self.tracker.observe_fields(ts, cid, csm, method, code, ftag, fuser, tuser, ttag)
        for rec in ended:
            self._append(dumps(rec), rec["call_id"].encode("utf-8", "surrogateescape"))
        return len(ended)

    @cython.cfunc
    def _append(self, line: bytes, key: bytes) -> cython.void:
        """A record serialised elsewhere (a call summary) as the next line of the block."""
        need: cython.Py_ssize_t = self.olen + len(line) + 1
        if need > len(self.obuf):
            self.obuf.extend(bytes(max(need - len(self.obuf), len(self.obuf))))
        q: cython.p_uchar
        if cython.compiled:
            q = cython.cast(cython.p_uchar, self.obuf)
        else:
            q = self.obuf
        k0: cython.Py_ssize_t = self.olen
        k: cython.Py_ssize_t = _lit(q, k0, line)
        q[k] = 10
        if self.want_pairs:
            self.starts.append((k0, k, 0, 0, key))
        self.olen = k + 1


def sdp_json(body: bytes):
    """The lane's JSON for an application/sdp body, or None where it defers to the Python parser
    (for tests: it must equal orjson.dumps(sdp.parse_sdp(body)))."""
    if not cython.compiled:
        raise RuntimeError("the SIP lane exists only in the compiled build")
    out = bytearray(16 * len(body) + 1024)
    q: cython.p_uchar
    p: cython.p_uchar
    if cython.compiled:
        q = cython.cast(cython.p_uchar, out)
        p = cython.cast(cython.p_uchar, body)
    else:
        q = out
        p = body
    k: cython.Py_ssize_t = _sdp(q, 0, p, 0, len(body))
    return None if k < 0 else bytes(out[:k])
