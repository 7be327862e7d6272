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
    from cython.cimports.cpython.unicode import (
        PyUnicode_1BYTE_KIND,
        PyUnicode_DATA,
        PyUnicode_GET_LENGTH,
        PyUnicode_KIND,
    )
    from cython.cimports.libc.string import memcpy
    from cython.cimports.otus_agent.sip.scan_cy import _looks_like_sip, _scan_at
else:
    from otus_agent.sip.scan_cy import _looks_like_sip, _scan_at
if cython.compiled:   # the one fingerprint hash (sip/fingerprint_cy.pxd), over the message in place
    from cython.cimports.otus_agent.sip.fingerprint_cy import _fnv, _fnv_num, _hex, _sep, _start
else:
    from otus_agent.sip.fingerprint_cy import _fnv, _fnv_num, _hex, _sep, _start
from orjson import dumps

from otus_agent.identity import CAPTURE_KEY, FRAGMENTS, GENERATION, ROOM
from otus_agent.sip.sdp_cy import DIRECTIONS, sdp_span
from otus_agent.sip.select import header_getter

if cython.compiled:
    from cython.cimports.otus_agent.sip.select_cy import DialogSelector
else:
    from otus_agent.sip.select_cy import DialogSelector

if cython.compiled:   # the one SDP scanner and its dict emitter (sip/sdp_cy.pxd; offsets: sip/sdpspans.pxd)
    from cython.cimports.otus_agent.sip.sdp_cy import _scan_sdp, _sdp_dict, _sdp_kind, _skip_tok, _skip_ws
    from cython.cimports.otus_agent.sip.sdpspans import *  # noqa: F403
else:
    from otus_agent.sip.sdp_cy import _scan_sdp, _sdp_dict, _sdp_kind, _skip_tok, _skip_ws
    from otus_agent.sip.sdpspans import *  # noqa: F403

FLUSH_BYTES = cython.declare(cython.Py_ssize_t, 64 << 10)
V6_CACHE_MAX = cython.declare(cython.Py_ssize_t, 4096)   # IPv6 address pairs kept as text; emptied when full
NMETHODS = cython.declare(cython.int, 14)
METHODS = (b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"REGISTER", b"PRACK", b"SUBSCRIBE", b"NOTIFY",
           b"PUBLISH", b"INFO", b"REFER", b"MESSAGE", b"UPDATE")
METHOD_NAMES = tuple(m.decode() for m in METHODS)
# counters: [messages, requests, responses, 0xx..6xx (7), per method (NMETHODS)]
C_MSG = cython.declare(cython.int, 0)
C_REQ = cython.declare(cython.int, 1)
C_RESP = cython.declare(cython.int, 2)
C_CLASS = cython.declare(cython.int, 3)
C_METHOD = cython.declare(cython.int, 10)
NCOUNT = cython.declare(cython.int, 24)
COUNTERS = {"messages": C_MSG, "requests": C_REQ, "responses": C_RESP, "classes": C_CLASS, "methods": C_METHOD,
            "size": NCOUNT}
HEX = cython.declare(bytes, b"0123456789abcdef")
_HX = cython.declare(cython.p_uchar)     # its bytes as a C table
if cython.compiled:
    _HX = cython.cast(cython.p_uchar, HEX)
else:
    _HX = HEX
IDENT_ROOM = cython.declare(cython.Py_ssize_t, ROOM)    # bytes kept free for a record's identity keys
ID_CACHE = cython.declare(cython.Py_ssize_t, 4096)      # IPv4 addresses whose FRAGMENTS answer a lane keeps (2**12)



# per byte, what a JSON string needs: 0 copy as is, 1 not ASCII (the general path decodes it),
# 2 a backslash before it (" and \\), 3 a control character (an escape sequence)
_ESC_TABLE = cython.declare(bytes, bytes(0 if 0x20 <= c < 0x80 and c not in (34, 92) else
                                         1 if c >= 0x80 else 2 if c in (34, 92) else 3 for c in range(256)))
_ESC = cython.declare(cython.p_uchar)
# the same test on eight bytes at once (each constant is one byte repeated): "has a byte >= 0x80, < 0x20,
# equal to 0x22 or equal to 0x5C" (the haszero / hasless tricks: exact for "any byte", not for which);
# unsigned long is 64 bits on the LP64 Linux Otus runs on
_W01 = cython.declare(cython.ulong, 0x0101010101010101)
_W20 = cython.declare(cython.ulong, 0x2020202020202020)
_W22 = cython.declare(cython.ulong, 0x2222222222222222)
_W5C = cython.declare(cython.ulong, 0x5C5C5C5C5C5C5C5C)
_W80 = cython.declare(cython.ulong, 0x8080808080808080)
if cython.compiled:
    _ESC = cython.cast(cython.p_uchar, _ESC_TABLE)
else:
    _ESC = _ESC_TABLE


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _lit(q: cython.p_uchar, k: cython.Py_ssize_t, lit: bytes) -> cython.Py_ssize_t:
    n: cython.Py_ssize_t = len(lit)
    j: cython.Py_ssize_t
    if cython.compiled:
        memcpy(q + k, cython.cast(cython.p_uchar, lit), n)
    else:
        for j in range(n):
            q[k + j] = lit[j]
    return k + n


@cython.cfunc
@cython.exceptval(check=False)
def _int(q: cython.p_uchar, k: cython.Py_ssize_t, v: cython.longlong) -> cython.Py_ssize_t:
    """The decimal digits of v (str(v)): counted first, then written from the last, two per division."""
    u: cython.ulong
    t: cython.ulong
    n: cython.int = 1
    d: cython.int
    if v < 0:
        q[k] = 45  # '-'
        k += 1
        u = cython.cast(cython.ulong, -(v + 1)) + 1
    else:
        u = v
    t = u
    while t >= 10:
        t //= 10
        n += 1
    e: cython.Py_ssize_t = k + n
    while u >= 100:
        d = u % 100
        u //= 100
        q[e - 1] = 48 + d % 10
        q[e - 2] = 48 + d // 10
        e -= 2
    if u >= 10:
        q[e - 1] = 48 + u % 10
        q[e - 2] = 48 + u // 10
    else:
        q[e - 1] = 48 + u
    return k + n


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u8(q: cython.p_uchar, k: cython.Py_ssize_t, v: cython.uchar) -> cython.Py_ssize_t:
    """_int for 0..255 (an IPv4 address's byte)."""
    if v >= 100:
        q[k] = 48 + v // 100
        q[k + 1] = 48 + v // 10 % 10
        q[k + 2] = 48 + v % 10
        return k + 3
    if v >= 10:
        q[k] = 48 + v // 10
        q[k + 1] = 48 + v % 10
        return k + 2
    q[k] = 48 + v
    return k + 1


@cython.cfunc
@cython.exceptval(-2, check=True)
def _str(q: cython.p_uchar, k: cython.Py_ssize_t, p: cython.p_uchar, a: cython.longlong,
         b: cython.longlong) -> cython.Py_ssize_t:
    """A JSON string of p[a:b] escaped as orjson escapes it; null when a < 0; -1 for non-ASCII."""
    j: cython.longlong = a
    c: cython.uchar
    e: cython.uchar
    w: cython.ulong
    x: cython.ulong
    y: cython.ulong
    if a < 0:
        return _lit(q, k, b"null")
    q[k] = 34
    k += 1
    if cython.compiled:       # eight bytes at a time while none is non-ASCII, a control, '"' or '\\'
        while j + 8 <= b:
            memcpy(cython.address(w), p + j, 8)
            x = w ^ _W22
            y = w ^ _W5C
            if ((w | ((w - _W20) & ~w) | ((x - _W01) & ~x) | ((y - _W01) & ~y)) & _W80) != 0:
                break
            memcpy(q + k, p + j, 8)
            k += 8
            j += 8
    while j < b:
        c = p[j]
        j += 1
        e = _ESC[c]
        if e == 0:               # the common case: one table look-up per byte
            q[k] = c
            k += 1
        elif e == 1:
            return -1
        elif e == 2:
            q[k] = 92
            q[k + 1] = c
            k += 2
        else:
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
                q[k] = _HX[c >> 4]
                q[k + 1] = _HX[c & 15]
                k += 2
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
        k = _u8(q, k, p[at + i])
    q[k] = 34
    return k + 1


@cython.cfunc
def _addr(v4: cython.p_uchar, at: cython.int, text: bytes) -> bytes:
    """An address as text (otus_agent/identity.py's FRAGMENTS key): IPv4 from its 4 bytes at v4 + at, else ``text``."""
    tmp: cython.uchar[24]
    if v4 == cython.NULL:
        return text
    t: cython.p_uchar = cython.address(tmp[0])
    n: cython.Py_ssize_t = _ipv4(t, 0, v4, at)
    return t[1:n - 1]


# the direction codes of sip/sdpspans.pxd (sdp_cy.DIRECTIONS) as the record's JSON
_DIR_JSON = tuple(b',"direction":"' + d.encode() + b'"' if d else b"" for d in DIRECTIONS)


@cython.cfunc
@cython.exceptval(-2, check=True)
def _sdp(q: cython.p_uchar, k: cython.Py_ssize_t, lim: cython.Py_ssize_t, p: cython.p_uchar, a: cython.Py_ssize_t,
         b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The JSON emitter of the one SDP scanner (sip/sdp_cy.py: _scan_sdp, offsets as in sip/sdpspans.pxd):
    orjson.dumps(sdp_cy.parse_sdp(p[a:b])) written at q[k:], null when p[a:b] is not SDP.  A body that is
    not ASCII is written as orjson writes the dict emitter's output over the same offsets; -1 when that
    does not fit below q[lim]."""
    s: cython.longlong[NSDP]
    m: cython.Py_ssize_t
    r: cython.Py_ssize_t
    r1: cython.Py_ssize_t
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    e: cython.Py_ssize_t
    n: cython.Py_ssize_t
    if not _scan_sdp(p, a, b, s):
        return _lit(q, k, b"null")
    if s[SD_ENC] != 0:
        js = dumps(_sdp_dict(p, s))
        if k + len(js) > lim:
            return -1
        return _lit(q, k, js)
    k = _lit(q, k, b'{"media":[')
    for m in range(SD_MEDIA, SD_MEDIA + MW * s[SD_NMEDIA], MW):
        if m > SD_MEDIA:
            q[k] = 44
            k += 1
        k = _lit(q, k, b'{"type":')
        k = _str(q, k, p, s[m + M_T0], s[m + M_T1])
        k = _lit(q, k, b',"port":')
        if s[m + M_PORT] >= 0:
            k = _int(q, k, s[m + M_PORT])
        else:
            k = _lit(q, k, b"null")
        k = _lit(q, k, b',"proto":')
        k = _str(q, k, p, s[m + M_P0], s[m + M_P1])
        k = _lit(q, k, b',"payloads":[')
        i = s[m + M_PL0]
        e = s[m + M_PL1]
        while i < e:
            if i > s[m + M_PL0]:
                q[k] = 44
                k += 1
            j = _skip_tok(p, i, e, 0)
            k = _str(q, k, p, i, j)
            i = _skip_ws(p, j, e, 0)
        q[k] = 93
        k += 1
        if s[m + M_CONN] == 1:
            k = _lit(q, k, b',"connection":')
            k = _str(q, k, p, s[m + M_C0], s[m + M_C1])
        n = s[m + M_RN]
        if n:
            k = _lit(q, k, b',"rtpmap":{')
            r1 = SD_RTP + RW * (s[m + M_R] + n)
            for r in range(SD_RTP + RW * s[m + M_R], r1, RW):
                k = _str(q, k, p, s[r + R_K0], s[r + R_K1])
                q[k] = 58
                k = _str(q, k + 1, p, s[r + R_V0], s[r + R_V1])
                q[k] = 44
                k += 1
            q[k - 1] = 125
        if s[m + M_CONN] == 2:
            k = _lit(q, k, b',"connection":')
            k = _str(q, k, p, s[m + M_C0], s[m + M_C1])
        if s[m + M_DIR]:
            k = _lit(q, k, _DIR_JSON[s[m + M_DIR]])
        if s[m + M_MUX]:
            k = _lit(q, k, b',"rtcp_mux":true')
        if s[m + M_RC0] >= 0:
            k = _lit(q, k, b',"rtcp":')
            k = _str(q, k, p, s[m + M_RC0], s[m + M_RC1])
        q[k] = 125
        k += 1
    q[k] = 93
    k += 1
    if s[SD_OU0] >= 0:
        k = _lit(q, k, b',"origin":{"username":')
        k = _str(q, k, p, s[SD_OU0], s[SD_OU1])
        k = _lit(q, k, b',"session_id":')
        k = _str(q, k, p, s[SD_OI0], s[SD_OI1])
        k = _lit(q, k, b',"session_version":')
        k = _str(q, k, p, s[SD_OV0], s[SD_OV1])
        k = _lit(q, k, b',"address":')
        k = _str(q, k, p, s[SD_OA0], s[SD_OA1])
        q[k] = 125
        k += 1
    if s[SD_C0] >= 0:
        k = _lit(q, k, b',"connection":')
        k = _str(q, k, p, s[SD_C0], s[SD_C1])
    if s[SD_DIR]:
        k = _lit(q, k, _DIR_JSON[s[SD_DIR]])
    if s[SD_MUX]:
        k = _lit(q, k, b',"rtcp_mux":true')
    q[k] = 125
    return k + 1


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


# ---------------------------------------------------------------- call summaries (--calls)
# The call table is sip/dialogs_cy.py (the one state machine): the lane feeds CallTable.step from the
# scanner's offsets with C fields (no Python call, no str per field it does not read, no object per
# message) and writes each ended call's summary itself, as orjson writes _Call.summary.  The general path
# of the same stage feeds the same table (observe, observe_record); tests/agent/sip/test_lane_calls.py
# compares the lane's records with it byte for byte.
if cython.compiled:
    from cython.cimports.otus_agent.sip.dialogs_cy import (
        K_BYE,
        K_CANCEL,
        K_INVITE,
        K_NONE,
        K_OTHER,
        NO_TS,
        CallTable,
        _Call,
        _ms,
    )

    from otus_agent.sip.dialogs_cy import STATES
else:
    from otus_agent.sip.dialogs_cy import K_BYE, K_CANCEL, K_INVITE, K_NONE, K_OTHER, NO_TS, STATES, CallTable, _Call, _ms

STATE_BYTES = tuple(x.encode() for x in STATES)


@cython.cfunc
@cython.exceptval(-2, check=True)
def _ustr(q: cython.p_uchar, k: cython.Py_ssize_t, s: object) -> cython.Py_ssize_t:
    """A text as _str writes it (null for None); -1 unless it is ASCII."""
    if s is None:
        return _lit(q, k, b"null")
    if not cython.compiled or PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        return -1
    return _str(q, k, cython.cast(cython.p_uchar, PyUnicode_DATA(s)), 0, PyUnicode_GET_LENGTH(s))


@cython.cfunc
@cython.exceptval(-2, check=True)
def _ms_json(q: cython.p_uchar, k: cython.Py_ssize_t, a: cython.longlong, b: cython.longlong) -> cython.Py_ssize_t:
    """orjson.dumps(_ms(a, b)) written here.  For 0 <= b - a < 10**15 ns not ending in exactly 500 ns,
    round((b - a) / 1e6, 3) is the microsecond count rounded half up, and orjson writes it as its
    decimal digits, a point and one to three decimals (tests/agent/sip/test_lane_calls.py checks both
    claims); other spans take Python's round and orjson."""
    d: cython.longlong = b - a
    u: cython.longlong
    f: cython.int
    if a == NO_TS or b == NO_TS:
        return _lit(q, k, b"null")
    if d < 0 or d >= 1_000_000_000_000_000 or d % 1000 == 500:
        return _lit(q, k, dumps(_ms(a, b)))
    u = (d + 500) // 1000
    k = _int(q, k, u // 1000)
    q[k] = 46
    f = u % 1000
    q[k + 1] = 48 + f // 100
    k += 2
    if f % 100:
        q[k] = 48 + f // 10 % 10
        k += 1
        if f % 10:
            q[k] = 48 + f % 10
            k += 1
    return k


def ms_json(a: object, b: object) -> bytes:
    """_ms_json for tests: it must equal orjson.dumps(dialogs_cy.ms(a, b))."""
    out = bytearray(64)
    q: cython.p_uchar
    if cython.compiled:
        q = cython.cast(cython.p_uchar, out)
    else:
        q = out
    k: cython.Py_ssize_t = _ms_json(q, 0, NO_TS if a is None else a, NO_TS if b is None else b)
    return bytes(out[:k])


@cython.cfunc
@cython.exceptval(check=False)
def _ts_json(q: cython.p_uchar, k: cython.Py_ssize_t, v: cython.longlong) -> cython.Py_ssize_t:
    return _lit(q, k, b"null") if v == NO_TS else _int(q, k, v)


@cython.cfunc
def _ipv4_text(p: cython.p_uchar, at: cython.Py_ssize_t) -> str:
    """socket.inet_ntop(AF_INET, ...) of the 4 bytes at p + at."""
    tmp: cython.uchar[16]
    k: cython.Py_ssize_t = 0
    i: cython.int
    for i in range(4):
        if i:
            tmp[k] = 46
            k += 1
        k = _u8(cython.address(tmp[0]), k, p[at + i])
    return cython.cast(cython.p_uchar, cython.address(tmp[0]))[:k].decode("ascii")


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
    tracker: CallTable    # call summaries on (the SIP stage's table), or None
    ended: list           # the summaries one message ended (reused)
    v6text: dict          # IPv6 source + destination (32 bytes) -> their text (bounded: V6_CACHE_MAX)
    tcp: object           # the SIP stage's TcpReassembler (pure ACKs stay in the lane) or None
    tcp_wire: dict        # its streams by wire key
    tcp_streams: dict     # its streams by key, in the order of their last activity
    # the SIP stage's DialogSelector (sip.match), or None: every message is written; and the header
    # names its conditions read
    select = cython.declare(object, visibility="public")
    select_heads = cython.declare(object, visibility="public")
    sop: cython.p_longlong    # the scanner's slots (its array, held by self.scanner) and the counters, in place
    cnt: cython.p_longlong
    # identity (otus_agent/identity.py): FRAGMENTS' answer per IPv4 address, direct-mapped by a hash of the
    # address (id_keys: the address | 1 << 32, 0 empty; id_vals: the answer, None included), and the capture
    # point's; valid while identity.GENERATION and len(FRAGMENTS) stay what they were when filled
    frags: dict
    id_gen: cython.longlong[:]
    id_seen: cython.longlong
    id_len: cython.Py_ssize_t
    id_keys: cython.ulonglong[:]
    id_keys_arr: object
    id_vals: list
    id_capture: object
    # TCP: the reassembler's tick_ts, read once per run (only the general path moves it), and the segments
    # this run took, added to its ``segments`` when run returns (no Python attribute per segment)
    tick: cython.longlong
    seg: cython.longlong

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
        self.ended = []
        self.v6text = {}
        self.tcp = tcp
        self.tcp_wire = tcp.by_wire if tcp is not None else {}
        self.tcp_streams = tcp.streams if tcp is not None else {}
        self.select = None
        self.select_heads = frozenset()
        self.sop = cython.address(self.so[0])
        self.cnt = cython.address(self.counts[0])
        self.frags = FRAGMENTS
        self.id_gen = GENERATION
        self.id_keys_arr = array("Q", bytes(8 * ID_CACHE))
        self.id_keys = self.id_keys_arr
        self.id_vals = [None] * ID_CACHE
        self.id_seen = -1
        self.id_len = -1
        self.id_capture = None
        self.tick = 0
        self.seg = 0

    @cython.cfunc
    def _ident(self) -> cython.bint:
        """Whether records carry identity (FRAGMENTS not empty); the caches emptied when it changed."""
        frags: dict = self.frags
        j: cython.Py_ssize_t
        if not frags:
            return False
        if self.id_gen[0] != self.id_seen or len(frags) != self.id_len:
            for j in range(ID_CACHE):
                self.id_keys[j] = 0
            self.id_capture = frags.get(CAPTURE_KEY)
            self.id_seen = self.id_gen[0]
            self.id_len = len(frags)
        return True

    @cython.cfunc
    def _who(self, v4: cython.p_uchar, at: cython.int, text: bytes) -> object:
        """FRAGMENTS' answer for an address (``_addr``'s key; None: unknown): an IPv4 address from the
        cache, without making its text, once looked up."""
        a: cython.ulonglong
        key: cython.ulonglong
        h: cython.Py_ssize_t
        if v4 == cython.NULL:
            return self.frags.get(text)
        a = (cython.cast(cython.ulonglong, v4[at]) << 24) | (cython.cast(cython.ulonglong, v4[at + 1]) << 16) | \
            (cython.cast(cython.ulonglong, v4[at + 2]) << 8) | v4[at + 3]
        key = a | (cython.cast(cython.ulonglong, 1) << 32)
        h = ((a * 2654435761) & 0xFFFFFFFF) >> 20   # Fibonacci hash of the 32-bit address: 12 bits (ID_CACHE)
        if self.id_keys[h] == key:
            return self.id_vals[h]
        frag = self.frags.get(_addr(v4, at, text))
        self.id_keys[h] = key
        self.id_vals[h] = frag
        return frag

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
        """Handle packets start..n-1 until one needs the general path; return its index (n: all done).
        The TCP segments the lane took are added to the reassembler's count on the way out."""
        tcp = self.tcp
        if tcp is None:
            return self._run(buf, dec, n, ts, start)
        self.tick = tcp.tick_ts
        self.seg = 0
        try:
            return self._run(buf, dec, n, ts, start)
        finally:
            if self.seg:
                tcp.segments += self.seg
                self.seg = 0

    @cython.cfunc
    def _run(self, buf: bytes, dec: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
             start: cython.Py_ssize_t) -> cython.Py_ssize_t:
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
                if dec[base + F_PROTO] != 6 or self.tcp is None:
                    return i
                if dec[base + F_TCPFLAGS] & 7:
                    if plen != 0 or not self._control(bp, dec, base, ts[i]):
                        return i
                elif plen == 0:
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
        if ts - self.tick > 1_000_000_000:     # tcpstream.EXPIRE_EVERY_NS
            return False
        s = self.tcp_wire.get(self._wire(bp, dec, base))
        if s is not None:
            self._touch(s, ts)
        return True

    @cython.cfunc
    def _touch(self, s: object, ts: cython.longlong) -> cython.void:
        """TcpReassembler._touch without a Python call: count the segment (in seg, added when run
        returns), move its stream to the end of the table (ordered by last activity), note the time."""
        self.seg += 1
        key = s.key
        streams = self.tcp_streams
        streams.pop(key, None)
        streams[key] = s
        s.last_ts = ts

    @cython.cfunc
    def _control(self, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
                 ts: cython.longlong) -> cython.bint:
        """What SipStage._tcp does for a SYN, FIN or RST without payload, with no Datagram made: a SYN on
        a SIP port opens (or restarts) its stream; a FIN or RST closes an empty one.  False leaves the
        packet to the general path: the idle-stream timer due, bytes still buffered at the close (counted
        there), SYN with FIN or RST."""
        tcp = self.tcp
        if ts - self.tick > 1_000_000_000:     # tcpstream.EXPIRE_EVERY_NS
            return False
        fl: cython.longlong = dec[base + F_TCPFLAGS]
        seq: cython.longlong = dec[base + F_TCPSEQ]
        wire = self._wire(bp, dec, base)
        s = self.tcp_wire.get(wire)
        if fl & 2:
            if fl & 5:
                return False
            if s is None:
                sp: cython.longlong = dec[base + F_SPORT]
                dp: cython.longlong = dec[base + F_DPORT]
                if not (self.ports[sp] or self.ports[dp]):
                    return True           # not a SIP port: not followed
                l3: cython.Py_ssize_t = dec[base + F_L3OFF]
                if dec[base + F_IPVER] == 4:
                    s = tcp.open((_ipv4_text(bp, l3 + 12), sp, _ipv4_text(bp, l3 + 16), dp), seq, ts, wire)
                else:     # the decoder's text of an IPv6 address (decode/decoder.py: socket.inet_ntop)
                    s = tcp.open((socket.inet_ntop(socket.AF_INET6, bp[l3 + 8:l3 + 24]), sp,
                                  socket.inet_ntop(socket.AF_INET6, bp[l3 + 24:l3 + 40]), dp), seq, ts, wire)
            # TcpReassembler.add for a SYN without payload
            self._touch(s, ts)
            s.next_seq = (seq + 1) & 0xFFFFFFFF
            s.buf.clear()
            s.pending.clear()
            s.pending_bytes = 0
            return True
        if s is None:
            return True                   # no stream, nothing to frame: the general path ignores it too
        if s.buf:
            return False
        # TcpReassembler.add for a FIN or RST without payload (the stream is closed), then close()
        self._touch(s, ts)
        s.closed = True
        key = s.key
        del self.tcp_streams[key]
        if self.tcp_wire.get(s.wire) is s:
            del self.tcp_wire[s.wire]
        return True

    @cython.cfunc
    def _tcp_message(self, buf: bytes, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
                     pay: cython.Py_ssize_t, plen: cython.Py_ssize_t, ts: cython.longlong) -> cython.bint:
        """SipStage._tcp's common case without a Datagram: a segment in order on a followed, idle stream
        (nothing buffered or waiting, no WebSocket) that holds exactly one whole message the scanner
        accepts.  Its record, then TcpReassembler.consumed; False leaves the packet untouched."""
        if ts - self.tick > 1_000_000_000:     # tcpstream.EXPIRE_EVERY_NS
            return False
        s = self.tcp_wire.get(self._wire(bp, dec, base))
        if s is None or s.buf or s.pending or s.state is not None:
            return False
        nxt: cython.longlong = s.next_seq
        if nxt != dec[base + F_TCPSEQ]:
            return False
        if not _looks_like_sip(bp + pay if cython.compiled else buf[pay:pay + plen], plen):
            return False
        if _scan_at(self.so, bp + pay, plen, True) != 1:
            return False
        o: cython.p_longlong = self.sop
        if o[O_BODY] + o[O_CL] != plen:
            return False
        if not self._whole(buf, bp, dec, base, pay, plen, ts, b"tcp"):
            return False
        self._touch(s, ts)                # TcpReassembler.consumed
        s.next_seq = (nxt + plen) & 0xFFFFFFFF
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
        if _scan_at(self.so, bp + pay, plen, False) != 1:
            return False
        return self._whole(buf, bp, dec, base, pay, plen, ts, b"udp")

    @cython.cfunc
    def _whole(self, buf: bytes, bp: cython.p_uchar, dec: cython.longlong[:], base: cython.Py_ssize_t,
               pay: cython.Py_ssize_t, plen: cython.Py_ssize_t, ts: cython.longlong, transport: bytes) -> cython.bint:
        """The record of the packet's payload, just scanned, with the addresses from its IP header."""
        ipver: cython.longlong = dec[base + F_IPVER]
        l3: cython.Py_ssize_t = dec[base + F_L3OFF]
        if ipver != 4:
            raw = buf[l3 + 8:l3 + 40]
            pair = self.v6text.get(raw)     # traffic repeats few address pairs: their text is kept
            if pair is None:
                if len(self.v6text) >= V6_CACHE_MAX:
                    self.v6text.clear()
                pair = (socket.inet_ntop(socket.AF_INET6, raw[:16]).encode(),
                        socket.inet_ntop(socket.AF_INET6, raw[16:]).encode())
                self.v6text[raw] = pair
            src6, dst6 = pair
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
        o: cython.p_longlong = self.sop
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
        s0: cython.longlong = -1      # the SDP, scanned and written by _sdp
        s1: cython.longlong = -1
        kind: cython.int = 0
        if o[O_CT0] >= 0 and bend > bstart:
            kind = _sdp_kind(p, o[O_CT0], o[O_CT1])
            if kind == 1:
                s0, s1 = bstart, bend
            elif kind == 2:    # multipart: the one search for the SDP part
                span = sdp_span(whole[off + o[O_CT0]:off + o[O_CT1]].decode("latin-1"),
                                whole[off + bstart:off + bend])
                if span is not None:
                    s0, s1 = bstart + span[0], bstart + span[1]
        # room for the record: escaping grows a byte to 6 at most, SDP JSON stays under 16x its text
        fixed: cython.Py_ssize_t = 16 * bend + 1024 + len(self.extra) + 2 * len(src6) + 2 * len(dst6) + \
            len(transport)
        ident: cython.bint = self._ident()
        if ident:     # room for the identity keys after the labels (otus_agent/identity.py)
            fixed += IDENT_ROOM
        need: cython.Py_ssize_t = self.olen + fixed
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
        if s0 >= 0:
            k = _sdp(q, k, len(self.obuf) - len(self.extra) - 2, p, s0, s1)
            if k < 0:
                return False
        else:
            k = _lit(q, k, b"null")
        k = _lit(q, k, self.extra)
        # who holds the addresses, and the capture point (otus_agent/identity.py); nothing outside a cluster
        # <fields:lane_identity> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        if ident:
            if len(self.obuf) - k < IDENT_ROOM:
                return False
            frag = self.id_capture
            if frag is not None:
                k = _lit(q, k, b',"capture":')
                k = _lit(q, k, frag)
            frag = self._who(v4, 0, src6)
            if frag is not None:
                k = _lit(q, k, b',"src_k8s":')
                k = _lit(q, k, frag)
            frag = self._who(v4, 4, dst6)
            if frag is not None:
                k = _lit(q, k, b',"dst_k8s":')
                k = _lit(q, k, frag)
        # </fields:lane_identity>
        q[k] = 125   # }
        q[k + 1] = 10
        k += 2
        admitted: cython.bint = True
        if self.select is not None:
            # judged on the record's fields once it is written (all ASCII then: a message the lane
            # leaves to the general path is judged there, once); dropped: its bytes are not kept
            admitted = self._admit(data, p, plen, ts, req, midx, whole, off)
        if admitted:
            if self.want_pairs:
                self.starts.append((k0, k - 1, kc0, kc1, key))
            self.olen = k
        c: cython.p_longlong = self.cnt
        c[C_MSG] += 1
        if req:
            c[C_REQ] += 1
            c[C_METHOD + midx] += 1
        else:
            c[C_RESP] += 1
            c[C_CLASS + o[O_STATUS] // 100] += 1
        if self.tracker is not None and admitted:
            self._observe(p, ts, req, midx)
        return True

    @cython.cfunc
    def _admit(self, data: object, p: cython.p_uchar, plen: cython.Py_ssize_t, ts: cython.longlong,
               req: cython.bint, midx: cython.int, whole: bytes, off: cython.Py_ssize_t) -> cython.bint:
        """The selector's verdict (SipStage._deliver_fast's, from the same fields): an initial request
        of a dialog not yet admitted is judged on the scanner's fields; every other message by its
        Call-ID alone, without making the rest into text."""
        o = self.so
        sel: DialogSelector = self.select
        # the Call-ID's bytes in place: one probe of the selector's table
        e: cython.longlong = sel.find(ts, p + o[O_CID0], o[O_CID1] - o[O_CID0]) if o[O_CID0] >= 0 else sel.find(ts, p, -1)
        in_dialog: cython.bint = o[O_TT0] >= 0
        if e < 0 and req and not in_dialog:
            # the fields the fast path's record holds (scan_cy._fields), ASCII as the record just written
            cid = p[o[O_CID0]:o[O_CID1]].decode("latin-1") if o[O_CID0] >= 0 else None
            fu = p[o[O_FU0]:o[O_FU1]].decode("latin-1") if o[O_FU0] >= 0 else None
            tu = p[o[O_TU0]:o[O_TU1]].decode("latin-1") if o[O_TU0] >= 0 else None
            ruri = p[o[O_U0]:o[O_U1]].decode("latin-1") if o[O_U0] >= 0 else None
            heads = None
            if self.select_heads:
                heads = header_getter(data if data is not None else whole[off:off + plen], self.select_heads)
            return sel.open(ts, METHOD_NAMES[midx], cid, fu, tu, ruri, heads)
        return sel.step_at(e, ts, req, METHOD_NAMES[midx] if req else None, -1 if req else o[O_STATUS],
                           p + o[O_CSM0], o[O_CSM1] - o[O_CSM0] if o[O_CSM0] >= 0 else -1)

    @cython.cfunc
    def _observe(self, p: cython.p_uchar, ts: cython.longlong, req: cython.bint, midx: cython.int) -> cython.int:
        """Feed the call table from the scanner's offsets (the fields the record just written holds, all
        ASCII) and append the summaries of the calls that ended, after the record: the general path's
        order.  Only the fields the message's kind reads are made into text (CallTable.step)."""
        o: cython.p_longlong = self.sop
        t: CallTable = self.tracker
        csm: cython.int = K_NONE
        cl: cython.longlong
        mk: cython.int = K_NONE
        if o[O_CID0] < 0 or o[O_CID1] == o[O_CID0] or o[O_CSM0] < 0:
            if not t.calls:
                return 0       # nothing to expire, nothing to follow: the table would do nothing
            cid = None
        else:
            cid = p[o[O_CID0]:o[O_CID1]].decode("latin-1")
            cl = o[O_CSM1] - o[O_CSM0]
            csm = K_OTHER
            if cl == 6 and _method(p + o[O_CSM0], 6) == 0:
                csm = K_INVITE
            elif cl == 3 and _method(p + o[O_CSM0], 3) == 2:
                csm = K_BYE
        ftag = None
        fuser = None
        tuser = None
        ttag = None
        code: cython.longlong = 0
        if req:
            mk = K_INVITE if midx == 0 else K_BYE if midx == 2 else K_CANCEL if midx == 3 else K_OTHER
            if mk == K_INVITE or mk == K_BYE:
                ftag = p[o[O_FT0]:o[O_FT1]].decode("latin-1") if o[O_FT0] >= 0 else None
            if mk == K_INVITE:
                fuser = p[o[O_FU0]:o[O_FU1]].decode("latin-1") if o[O_FU0] >= 0 else None
                tuser = p[o[O_TU0]:o[O_TU1]].decode("latin-1") if o[O_TU0] >= 0 else None
                if o[O_TT0] >= 0:
                    ttag = True            # an INVITE's To tag is only tested for presence (a re-INVITE)
        else:
            code = o[O_STATUS]
            if csm == K_INVITE and 200 <= code < 300 and o[O_TT0] >= 0:
                ttag = p[o[O_TT0]:o[O_TT1]].decode("latin-1")    # kept by the call it answers
        ended = self.ended
        t.step(ts, cid, csm, mk, code, ftag, fuser, tuser, ttag, ended)
        if not ended:
            return 0
        c: _Call
        for c in ended:
            self._summary(c)
        n: cython.int = len(ended)
        ended.clear()
        return n

    @cython.cfunc
    def _summary(self, c: _Call) -> cython.void:
        """The call's summary (c.summary(False), sip/dialogs_cy.py) as the next JSON line, written here as
        orjson writes it; texts that are not ASCII take orjson itself."""
        room: cython.Py_ssize_t = 512 + 6 * (len(c.call_id) + (len(c.from_user) if c.from_user is not None else 0) +
                                             (len(c.to_user) if c.to_user is not None else 0))
        if self.olen + room > len(self.obuf):
            self.obuf.extend(bytes(max(self.olen + room - len(self.obuf), len(self.obuf))))
        q: cython.p_uchar = cython.cast(cython.p_uchar, self.obuf)
        k0: cython.Py_ssize_t = self.olen
        k: cython.Py_ssize_t = _lit(q, k0, b'{"v":1,"type":"call","call_id":')
        k = _ustr(q, k, c.call_id)
        if k >= 0:
            k = _ustr(q, _lit(q, k, b',"from_user":'), c.from_user)
        if k >= 0:
            k = _ustr(q, _lit(q, k, b',"to_user":'), c.to_user)
        if k < 0:
            self._append(dumps(c.summary(False)), c.call_id.encode("utf-8", "surrogateescape"))
            return
        k = _int(q, _lit(q, k, b',"start_ts":'), c.invite_ts)
        k = _ts_json(q, _lit(q, k, b',"answer_ts":'), c.answer_ts)
        k = _ts_json(q, _lit(q, k, b',"end_ts":'), c.end_ts)
        k = _ms_json(q, _lit(q, k, b',"setup_ms":'), c.invite_ts, c.ringing_ts)
        k = _ms_json(q, _lit(q, k, b',"answer_ms":'), c.invite_ts, c.answer_ts)
        k = _ms_json(q, _lit(q, k, b',"duration_ms":'), c.answer_ts, c.end_ts)
        k = _lit(q, k, b',"final_status":')
        k = _int(q, k, c.final_status) if c.final_status != 0 else _lit(q, k, b"null")
        k = _lit(q, k, b',"ended_by":')
        k = _lit(q, k, b"null" if c.ended_by == 0 else b'"caller"' if c.ended_by == 1 else b'"callee"')
        k = _int(q, _lit(q, k, b',"reinvites":'), c.reinvites)
        k = _lit(q, _lit(q, k, b',"state":"'), STATE_BYTES[c.state])
        k = _lit(q, k, b'"}')
        q[k] = 10
        if self.want_pairs:
            self.starts.append((k0, k, 0, 0, c.call_id.encode("utf-8", "surrogateescape")))
        self.olen = k + 1

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
    """The lane's JSON for an application/sdp body (for tests: it must equal orjson.dumps(sdp.parse_sdp(body)),
    or null)."""
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
    k: cython.Py_ssize_t = _sdp(q, 0, len(out), p, 0, len(body))
    return None if k < 0 else bytes(out[:k])
