"""Fast path for typical SIP messages: one C-speed pass over the bytes.

``scan`` either locates every field a record needs (offsets into the buffer,
written to ``out``) and returns 1, or returns 0 when the message is anything
but plain -- folded lines, quoted-string escapes, IPv6 references, repeated
single-valued headers, non-ASCII, a defect of any kind -- and the full parser
(``sip.parse``) must look at it.  The fast path therefore never decides that a
message is malformed; it only accepts messages the full parser would accept
with no defect, and extracts the same values (a test checks both agree on the
whole corpus).

Compiled by Cython when available (setup.py); plain Python otherwise.
"""

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]
if cython.compiled:   # the one definition: sip/slots.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.sip.slots import *  # noqa: F403
else:
    from otus_agent.sip.slots import *  # noqa: F403
if cython.compiled:   # the one whitespace test (str.isspace per encoding): the SDP scanner's
    from cython.cimports.otus_agent.sip.sdp_cy import _skip_ws
else:
    from otus_agent.sip import sdp_cy as _sdp
    if not hasattr(_sdp, "_skip_ws"):   # this source beside a compiled sdp_cy (the tests run both builds)
        import importlib.util
        import pathlib
        _spec = importlib.util.spec_from_file_location("otus_agent.sip._sdp_source",
                                                       pathlib.Path(_sdp.__file__).with_name("sdp_cy.py"))
        _sdp = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_sdp)
    _skip_ws = _sdp._skip_ws
if cython.compiled:
    from cython.cimports.libc.string import memcpy
import sys

from otus_agent.sip import grammar
from otus_agent.sip.fingerprint_cy import fingerprint

MAX_HEADERS = cython.declare(cython.int, 128)
MAX_PORT = cython.declare(cython.longlong, grammar.MAX_PORT)
MAX_CSEQ = cython.declare(cython.longlong, grammar.MAX_CSEQ)
MAX_FORWARDS = cython.declare(cython.longlong, grammar.MAX_FORWARDS)
MAX_DELTA = cython.declare(cython.longlong, grammar.MAX_DELTA)
MAX_LIMIT = cython.declare(cython.longlong, grammar.MAX_LIMIT)
# the character classes as lookup tables (C globals holding the bytes the pointers borrow)
_TOKEN_TABLE = cython.declare(bytes, grammar.table(grammar.TOKEN))
_HOST_TABLE = cython.declare(bytes, grammar.table(grammar.HOST))
# what _uri's walk does per byte: 0 nothing, 1 '@', 2 SP or HTAB (no URI), 3 what only the strict walk
# refuses (other controls, DEL and non-ASCII, '?', '<', '>', '"', ',')
_URI_TABLE = cython.declare(bytes, bytes(1 if c == 64 else 2 if c in (32, 9) else
                                         3 if c < 32 or c >= 127 or c in (63, 60, 62, 34, 44) else 0
                                         for c in range(256)))
# what _param's value walk does per byte: 1 ';' (its end), 2 what the strict walk refuses (SP, HTAB, '"', ',')
_PVAL_TABLE = cython.declare(bytes, bytes(1 if c == 59 else 2 if c in (32, 9, 34, 44) else 0 for c in range(256)))
_TT = cython.declare(cython.p_uchar)
_HT = cython.declare(cython.p_uchar)
_UT = cython.declare(cython.p_uchar)
_PVT = cython.declare(cython.p_uchar)
if cython.compiled:
    _TT = cython.cast(cython.p_uchar, _TOKEN_TABLE)
    _HT = cython.cast(cython.p_uchar, _HOST_TABLE)
    _UT = cython.cast(cython.p_uchar, _URI_TABLE)
    _PVT = cython.cast(cython.p_uchar, _PVAL_TABLE)
else:
    _TT = _TOKEN_TABLE
    _HT = _HOST_TABLE
    _UT = _URI_TABLE
    _PVT = _PVAL_TABLE
# the header block's first pass reads eight bytes at a time (compiled, little-endian: the lowest address
# is the lowest byte); each constant is one byte repeated, unsigned long is 64 bits on LP64 Linux
_SWAR = cython.declare(cython.bint, sys.byteorder == "little")
_W01 = cython.declare(cython.ulong, 0x0101010101010101)
_W0E = cython.declare(cython.ulong, 0x0E0E0E0E0E0E0E0E)
_W80 = cython.declare(cython.ulong, 0x8080808080808080)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _tok(c: cython.uchar) -> cython.bint:
    """RFC 3261 token character (grammar.TOKEN)."""
    return _TT[c] != 0


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _hostc(c: cython.uchar) -> cython.bint:
    """hostname / IPv4address character (grammar.HOST)."""
    return _HT[c] != 0


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _lower(c: cython.uchar) -> cython.uchar:
    if c >= 65 and c <= 90:
        return c + 32
    return c


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _eq(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, lit: bytes) -> cython.bint:
    """Case-insensitive compare of p[a:b] with a lower-case literal."""
    n: cython.Py_ssize_t = len(lit)
    i: cython.Py_ssize_t
    q: cython.p_uchar
    if b - a != n:
        return False
    if cython.compiled:
        q = cython.cast(cython.p_uchar, lit)
    else:
        q = lit
    for i in range(n):
        if _lower(p[a + i]) != q[i]:
            return False
    return True


@cython.cfunc
@cython.exceptval(check=False)
def _digits(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, limit: cython.longlong) -> cython.longlong:
    """The decimal p[a:b] (ASCII digits, as many as there are); -1 when it is not one, -2 when it exceeds
    ``limit`` (at most MAX_LIMIT: the value stops growing past it, so it never overflows)."""
    v: cython.longlong = 0
    i: cython.Py_ssize_t
    if a >= b:
        return -1
    for i in range(a, b):
        if p[i] < 48 or p[i] > 57:
            return -1
        if v <= limit:
            v = v * 10 + (p[i] - 48)
    if v > limit:
        return -2
    return v


def digits(s: bytes, limit: cython.longlong) -> cython.longlong:
    """``_digits`` over all of s, for the full parser's numbers."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    if limit > MAX_LIMIT:
        raise ValueError("digits: limit above MAX_LIMIT")
    return _digits(p, 0, len(s), limit)


LOW32 = cython.declare(cython.longlong, (1 << 32) - 1)   # the offset in a packed walk result (a C constant)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _param(p: cython.p_uchar, i: cython.Py_ssize_t, b: cython.Py_ssize_t, strict: cython.bint) -> cython.longlong:
    """The one parameter walk: the ';name[=value]' starting at the ';' p[i] runs to the next ';' (or b), its
    name to the first '='.  Returns that end | (the '=' + 1, 0 when none) << 32.  ``strict`` (the scanner):
    -1 unless the name is a non-empty token and the value holds no SP, HTAB, '"' or ','; lenient (the
    parser) never fails: it strips LWS and tests the name itself."""
    k: cython.Py_ssize_t = i + 1
    eq: cython.Py_ssize_t = -1
    bad: cython.bint = False
    c: cython.uchar
    while k < b:      # the name, to '=' or ';'
        c = p[k]
        if c == 59:  # ';'
            break
        if c == 61:  # '='
            eq = k
            k += 1
            break
        if strict and not _tok(c):
            bad = True
        k += 1
    if eq >= 0:
        while k < b:  # the value, to ';' (one table look-up per byte: _PVT)
            c = _PVT[p[k]]
            if c != 0:
                if c == 1:
                    break
                if strict:
                    bad = True
            k += 1
    if strict and (bad or (eq if eq >= 0 else k) == i + 1):
        return -1
    return k | (cython.cast(cython.longlong, eq + 1) << 32)


@cython.cfunc
@cython.exceptval(check=False)
def _params(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, want: bytes,
            out: cython.longlong[:], slot: cython.int) -> cython.bint:
    """Strict ';name[=value]...' (``_param``); records the value of the parameter ``want`` (first
    occurrence) at out[slot], out[slot+1]."""
    i: cython.Py_ssize_t = a
    e: cython.Py_ssize_t
    eq: cython.Py_ssize_t
    r: cython.longlong
    while i < b:
        if p[i] != 59:  # ';'
            return False
        r = _param(p, i, b, True)
        if r < 0:
            return False
        e = r & LOW32
        eq = (r >> 32) - 1
        if slot >= 0 and out[slot] < 0 and _eq(p, i + 1, eq if eq >= 0 else e, want):
            if eq < 0:
                out[slot] = e
                out[slot + 1] = e
            else:
                out[slot] = eq + 1
                out[slot + 1] = e
        i = e
    return True


def param_spans(s: bytes) -> list:
    """The lenient ``_param`` walk over all of s, for the full parser: [end of the text before the first
    ';', then per parameter name start, name end, value start (-1: no '='), value end]."""
    p: cython.p_uchar
    n: cython.Py_ssize_t = len(s)
    i: cython.Py_ssize_t = 0
    e: cython.Py_ssize_t
    eq: cython.Py_ssize_t
    r: cython.longlong
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    while i < n and p[i] != 59:
        i += 1
    spans = [i]
    while i < n:
        r = _param(p, i, n, False)
        e = r & LOW32
        eq = (r >> 32) - 1
        if eq < 0:
            spans += (i + 1, e, -1, e)
        else:
            spans += (i + 1, eq, eq + 1, e)
        i = e
    return spans


BAD = cython.declare(cython.longlong, 1 << 60)   # _hostport's "not valid" flag


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _hostport(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.longlong:
    """The one host[:port] walk over all of p[a:b]: the host runs to the ']' of an IPv6 reference, else
    to the first ':'.  Returns the host's end | (port + 3) << 32 (port: -3 none, -1 not a number, -2 past
    MAX_PORT, else its value) | BAD when the host is not one (``_host``) or the port not 0..MAX_PORT:
    the scanner needs the flag, the parser the spans it builds its objects from anyway."""
    h: cython.Py_ssize_t = a
    port: cython.longlong = -3
    if a < b and p[a] == 91:  # '['
        while h < b and p[h] != 93:
            h += 1
        if h >= b:
            return b | BAD
        h += 1
        if (h < b and p[h] != 58) or _host(p, a, h) != h:
            if h < b and p[h] == 58:
                port = _digits(p, h + 1, b, MAX_PORT)
            return h | (cython.cast(cython.longlong, port + 3) << 32) | BAD
    else:
        h = _host(p, a, b)         # a valid host ends at ':' or b; else find the ':' for the spans
        if h == a or (h < b and p[h] != 58):
            while h < b and p[h] != 58:
                h += 1
            if h < b:
                port = _digits(p, h + 1, b, MAX_PORT)
            return h | (cython.cast(cython.longlong, port + 3) << 32) | BAD
    if h < b:
        port = _digits(p, h + 1, b, MAX_PORT)
    if port == -1 or port == -2:
        return h | (cython.cast(cython.longlong, port + 3) << 32) | BAD
    return h | (cython.cast(cython.longlong, port + 3) << 32)


def hostport(s: bytes) -> tuple:
    """``_hostport`` over all of s, for the full parser: (host end, port or None, valid); a port that is
    not a number reads -1, one past MAX_LIMIT MAX_LIMIT + 1 (as the parser's numbers)."""
    p: cython.p_uchar
    r: cython.longlong
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    r = _hostport(p, 0, len(s))
    return (r & LOW32, _port_of(s, r, len(s)), (r & BAD) == 0)


def _port_of(s: bytes, r: cython.longlong, end: cython.Py_ssize_t) -> object:
    """The port of a packed ``_hostport`` result over s[..end], for the parser's objects: None when
    there is none; a port past MAX_PORT reads its value (MAX_LIMIT + 1 past that)."""
    h: cython.Py_ssize_t = r & LOW32
    port: cython.longlong = ((r & (BAD - 1)) >> 32) - 3
    if port == -2:
        port = digits(s[h + 1:end], MAX_LIMIT)
        if port == -2:
            port = MAX_LIMIT + 1
    return None if port == -3 else port


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _quoted(p: cython.p_uchar, i: cython.Py_ssize_t, b: cython.Py_ssize_t, strict: cython.bint) -> cython.Py_ssize_t:
    """The one quoted-string walk: the index of the '"' closing the string whose content starts at i
    ('\\' escapes the next byte), -1 when none.  ``strict``: -1 also on an escape, a control or a
    non-ASCII byte (the scanner hands those to the parser)."""
    c: cython.uchar
    while i < b:
        c = p[i]
        if c == 34:
            return i
        if strict and (c == 92 or c >= 127 or c < 32):
            return -1
        if c == 92:
            i += 1
        i += 1
    return -1


def closing_quote(s: bytes, i: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The lenient ``_quoted`` walk, for the full parser."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    return _quoted(p, i, len(s), False)


@cython.cfunc
@cython.exceptval(check=False)
def _v4_ok(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.bint:
    """glibc's inet_pton4 on p[a:b]: four decimal octets, no leading zeros, each <= 255."""
    saw: cython.bint = False
    octets: cython.int = 0
    cur: cython.int = 0
    c: cython.uchar
    while a < b:
        c = p[a]
        a += 1
        if 48 <= c <= 57:
            if saw and cur == 0:
                return False
            cur = cur * 10 + (c - 48)
            if cur > 255:
                return False
            if not saw:
                octets += 1
                if octets > 4:
                    return False
                saw = True
        elif c == 46 and saw:
            if octets == 4:
                return False
            cur = 0
            saw = False
        else:
            return False
    return octets >= 4


@cython.cfunc
@cython.exceptval(check=False)
def _v6_ok(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.bint:
    """glibc's inet_pton6 on p[a:b] (what socket.inet_pton accepts), without a Python call."""
    tp: cython.int = 0                 # bytes of the 16 filled so far
    colon: cython.bint = False         # '::' seen
    seen: cython.int = 0               # hex digits since the last colon
    val: cython.int = 0
    cur: cython.Py_ssize_t
    c: cython.uchar
    d: cython.int
    if a == b:
        return False
    if p[a] == 58:
        a += 1
        if a == b or p[a] != 58:
            return False
    cur = a
    while a < b:
        c = p[a]
        a += 1
        d = -1
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        if d >= 0:
            if seen == 4:
                return False
            val = (val << 4) | d
            seen += 1
            continue
        if c == 58:
            cur = a
            if seen == 0:
                if colon:
                    return False
                colon = True
                continue
            elif a == b:
                return False
            if tp + 2 > 16:
                return False
            tp += 2
            seen = 0
            val = 0
            continue
        if c == 46 and tp + 4 <= 16 and _v4_ok(p, cur, b):
            tp += 4
            seen = 0
            break
        return False
    if seen > 0:
        if tp + 2 > 16:
            return False
        tp += 2
    if colon:
        return tp != 16
    return tp == 16


def valid_ipv6(ref: bytes) -> bool:
    """_v6_ok for tests (it must agree with socket.inet_pton)."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, ref)
    else:
        p = ref
    return _v6_ok(p, 0, len(ref))


def is_token(s: bytes) -> bool:
    """A non-empty RFC 3261 token (grammar.TOKEN): ``_tok`` over s, for the full parser's token tests."""
    p: cython.p_uchar
    i: cython.Py_ssize_t
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    if len(s) == 0:
        return False
    for i in range(len(s)):
        if not _tok(p[i]):
            return False
    return True


def valid_host(host: bytes) -> bool:
    """hostname, IPv4address or IPv6reference (RFC 3261 25.1, RFC 5118) filling all of ``host``: the
    scanner's ``_host`` walk, for the full parser's host test."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, host)
    else:
        p = host
    return len(host) > 0 and _host(p, 0, len(host)) == len(host)


@cython.cfunc
@cython.exceptval(check=False)
def _looks_like_sip(p: cython.p_uchar, n: cython.Py_ssize_t) -> cython.bint:
    """Cheap test for the start of a SIP message: 'SIP/2.0 ', or a first line with a space within
    40 bytes that ends (within 2048 bytes) in SIP/2.0, any case.  The one definition: the SIP
    stage's heuristic and stream resync, and the compiled lane (cimported, sip/scan_cy.pxd)."""
    sp: cython.Py_ssize_t = -1
    nl: cython.Py_ssize_t = -1
    i: cython.Py_ssize_t
    e: cython.Py_ssize_t
    if n >= 8 and p[0] == 83 and p[1] == 73 and p[2] == 80 and p[3] == 47 and p[4] == 50 and p[5] == 46 \
            and p[6] == 48 and p[7] == 32:
        return True
    for i in range(min(n, 40)):
        if p[i] == 32:
            sp = i
            break
    if sp <= 0:
        return False
    for i in range(sp, min(n, 2048)):
        if p[i] == 10:
            nl = i
            break
    if nl < 0:
        return False
    e = nl
    while e > sp and p[e - 1] == 13:
        e -= 1
    if e - sp < 7:
        return False
    return _eq(p, e - 7, e, b"sip/2.0")


def looks_like_sip(data: bytes) -> bool:
    """``_looks_like_sip`` for Python callers."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, data)
    else:
        p = data
    return _looks_like_sip(p, len(data))


@cython.cfunc
@cython.exceptval(check=False)
def _host(p: cython.p_uchar, i: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """End of a hostname/IPv4 address or an IPv6 reference starting at i; i when none."""
    k: cython.Py_ssize_t = i
    c: cython.uchar
    if i < b and p[i] == 91:  # '['
        k = i + 1
        while k < b:
            c = p[k]
            if c == 93:
                break
            if not ((c >= 48 and c <= 58) or (c >= 97 and c <= 102) or (c >= 65 and c <= 70) or c == 46):
                return i
            k += 1
        if k >= b or k == i + 1 or not _v6_ok(p, i + 1, k):
            return i
        return k + 1
    while k < b and _hostc(p[k]):
        k += 1
    return k


# _uri's span block for the full parser (offsets from its base slot)
U_COLON = cython.declare(cython.int, 0)
U_KIND = cython.declare(cython.int, 1)     # 0 another scheme, 1 sip/sips, 2 tel
U_AT = cython.declare(cython.int, 2)
U_SEMI = cython.declare(cython.int, 3)     # the parameters' start (their end for sip: U_Q)
U_Q = cython.declare(cython.int, 4)        # the '?' of the headers, or the end
U_HP = cython.declare(cython.int, 5)       # _hostport's result
U_N = cython.declare(cython.int, 6)


@cython.cfunc
@cython.exceptval(check=False)
def _uri(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, out: cython.longlong[:],
         uslot: cython.int, hslot: cython.int, x: cython.int, strict: cython.bint) -> cython.int:
    """The one URI walk over p[a:b]: scheme ':' then, for sip/sips, userinfo up to the last '@' (the user
    to its first ':'), host[:port] (``_hostport``) up to the first ';', parameters up to the first '?',
    headers.  User and host spans go to out[uslot], out[hslot] (-1: not wanted); with x >= 0 the rest of
    the span block (U_*) for the parser.  Returns -1 when it is no URI (no scheme, LWS), 0 when malformed,
    1 when well-formed.  ``strict`` (the scanner): a plain sip:/sips: URI only -- no headers, nothing
    past ASCII, no control, '<', '>', '"' or ',', strict parameters -- else -1."""
    i: cython.Py_ssize_t
    k: cython.Py_ssize_t
    c: cython.uchar
    colon: cython.Py_ssize_t = a
    at: cython.Py_ssize_t = -1
    h0: cython.Py_ssize_t
    q: cython.Py_ssize_t
    semi: cython.Py_ssize_t
    r: cython.longlong
    kind: cython.int = 0
    plus: cython.bint = True
    ok: cython.bint = True
    if strict:   # sip: or sips: only
        if b - a >= 4 and _eq(p, a, a + 4, b"sip:"):
            colon = a + 3
        elif b - a >= 5 and _eq(p, a, a + 5, b"sips:"):
            colon = a + 4
        else:
            return -1
        kind = 1
    else:
        while colon < b and p[colon] != 58:  # ':'
            if not _tok(p[colon]):
                return -1
            if p[colon] != 43:  # '+'
                plus = False
            colon += 1
        if colon >= b or plus:
            return -1
        if (colon - a == 3 and _eq(p, a, colon, b"sip")) or (colon - a == 4 and _eq(p, a, colon, b"sips")):
            kind = 1
        elif colon - a == 3 and _eq(p, a, colon, b"tel"):
            kind = 2
    i = colon + 1
    q = b
    semi = b
    for k in range(i, b):
        c = _UT[p[k]]
        if c != 0:
            if c == 1:  # '@'
                at = k
            elif c == 2 or strict:
                return -1  # LWS; strict: control/non-ASCII, '?', '<', '>', '"', ','
    if x >= 0:
        if kind != 1:  # tel and others: the first ';'
            semi = i
            while semi < b and p[semi] != 59:
                semi += 1
        out[x + U_COLON] = colon
        out[x + U_KIND] = kind
        out[x + U_AT] = at
        out[x + U_SEMI] = semi
        out[x + U_Q] = b
    if kind != 1:
        return 1 if i < b else 0   # opaque (tel: its parameters are the parser's to read)
    h0 = i
    if at >= 0:
        k = i
        while k < at and p[k] != 58:  # user:password
            k += 1
        if k == i:
            ok = False
        if uslot >= 0:
            out[uslot] = i
            out[uslot + 1] = k
        h0 = at + 1
    if not strict:   # strict: no '?'
        q = h0
        while q < b and p[q] != 63:  # '?'
            q += 1
    semi = h0
    while semi < q and p[semi] != 59:  # ';'
        semi += 1
    r = _hostport(p, h0, semi)
    if r & BAD:
        ok = False
    if hslot >= 0:
        out[hslot] = h0
        out[hslot + 1] = r & LOW32
    if x >= 0:
        out[x + U_SEMI] = semi
        out[x + U_Q] = q
        out[x + U_HP] = r
    if strict:
        return 1 if ok and _params(p, semi, b, b"", out, -1) else -1
    return 1 if ok else 0


# _name_addr's span block for the full parser (offsets from its base slot)
N_Q = cython.declare(cython.int, 0)        # the display name's closing '"' (-1: not quoted)
N_LT = cython.declare(cython.int, 1)       # '<' (-1: an addr-spec)
N_GT = cython.declare(cython.int, 2)       # '>' (-1: none)
N_SEMI = cython.declare(cython.int, 3)     # an addr-spec's end: its first ';' (or the end)
N_SPEC = cython.declare(cython.int, 4)     # 1: '?' or ',' in that addr-spec
N_N = cython.declare(cython.int, 5)


@cython.cfunc
@cython.exceptval(check=False)
def _name_addr(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, out: cython.longlong[:],
               uslot: cython.int, hslot: cython.int, tslot: cython.int, want: bytes, x: cython.int,
               strict: cython.bint) -> cython.int:
    """The one name-addr / addr-spec walk over p[a:b]: a quoted display name (``_quoted``) then '<', or
    everything before the first '<' as the display name; the URI to the first '>' after it, or an
    addr-spec to the first ';'; header parameters after.  With x >= 0 the delimiters go to the span block
    (N_*) for the parser, which strips LWS, names its defects and reads URI and parameters with ``_uri`` and
    ``_param`` itself; returns -2 when the quoted string is unterminated, else 1.  ``strict`` (the scanner):
    nothing unusual -- token words, SP and HTAB before '<', no LWS inside <>, a strict URI (``_uri``) with its
    user and host at out[uslot], out[hslot], strict parameters with ``want``'s value at out[tslot] -- else -1."""
    i: cython.Py_ssize_t = a
    k: cython.Py_ssize_t
    q: cython.Py_ssize_t = -1
    lt: cython.Py_ssize_t = -1
    gt: cython.Py_ssize_t = -1
    semi: cython.Py_ssize_t
    spec: cython.int = 0
    if i < b and p[i] == 34:  # '"'
        q = _quoted(p, i + 1, b, strict)
        if q < 0:
            return -1 if strict else -2
        i = q + 1
        if strict:
            while i < b and (p[i] == 32 or p[i] == 9):
                i += 1
            if i >= b or p[i] != 60:
                return -1
    while i < b and p[i] != 60:  # '<'
        i += 1
    if i < b:
        lt = i
        if strict and q < 0:
            for k in range(a, lt):
                if not (_tok(p[k]) or p[k] == 32 or p[k] == 9):
                    return -1
        gt = lt + 1
        while gt < b and p[gt] != 62:  # '>'
            gt += 1
        if gt >= b:
            gt = -1
    elif q >= 0 and strict:
        return -1
    semi = a
    if lt < 0:
        while semi < b and p[semi] != 59:  # ';'
            if p[semi] == 63 or p[semi] == 44:  # '?' ','
                spec = 1
            semi += 1
    if x >= 0:
        out[x + N_Q] = q
        out[x + N_LT] = lt
        out[x + N_GT] = gt
        out[x + N_SEMI] = semi
        out[x + N_SPEC] = spec
    if strict:
        if lt >= 0:
            if gt < 0 or _uri(p, lt + 1, gt, out, uslot, hslot, -1, True) != 1:
                return -1
            return 1 if _params(p, gt + 1, b, want, out, tslot) else -1
        if _uri(p, a, semi, out, uslot, hslot, -1, True) != 1:
            return -1
        return 1 if _params(p, semi, b, want, out, tslot) else -1
    return 1


# _via's span block for the full parser (offsets from its base slot)
V_S1 = cython.declare(cython.int, 0)       # the first '/' (-1: fewer than two)
V_S2 = cython.declare(cython.int, 1)       # the second '/'
V_T0 = cython.declare(cython.int, 2)       # the transport, after LWS
V_T1 = cython.declare(cython.int, 3)
V_H0 = cython.declare(cython.int, 4)       # sent-by, after LWS
V_SEMI = cython.declare(cython.int, 5)     # its end: the first ';' (or the end)
V_N = cython.declare(cython.int, 6)


@cython.cfunc
@cython.exceptval(check=False)
def _via(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, out: cython.longlong[:],
         first: cython.bint, x: cython.int, strict: cython.bint) -> cython.bint:
    """The one via-parm walk over p[a:b]: protocol name '/' version '/' transport, LWS, sent-by (host[:port],
    ``_hostport``) up to the first ';', parameters (``_param``).  With x >= 0 the delimiters go to the span
    block (V_*) for the parser, which compares names, strips LWS and reads host and parameters itself.
    ``strict`` (the scanner): 'SIP/2.0/' token SP host[:port], strict parameters (the first Via's branch at
    O_VB0 when ``first``) -- else False."""
    s1: cython.Py_ssize_t = a
    s2: cython.Py_ssize_t
    t0: cython.Py_ssize_t
    t1: cython.Py_ssize_t
    h0: cython.Py_ssize_t
    i: cython.Py_ssize_t
    while s1 < b and p[s1] != 47:  # '/'
        s1 += 1
    s2 = s1 + 1
    while s2 < b and p[s2] != 47:
        s2 += 1
    if s2 >= b:
        if x >= 0:
            out[x + V_S1] = -1
        return False
    if strict:
        if s1 != a + 3 or s2 != a + 7 or not _eq(p, a, a + 8, b"sip/2.0/"):
            return False
        t0 = s2 + 1
    else:
        t0 = _skip_ws(p, s2 + 1, b, 1)
    t1 = t0
    while t1 < b and p[t1] != 32 and p[t1] != 9:
        t1 += 1
    if strict:
        if t1 == t0 or t1 >= b or p[t1] != 32:
            return False
        for i in range(t0, t1):
            if not _tok(p[i]):
                return False
        h0 = t1 + 1
    else:
        h0 = _skip_ws(p, t1, b, 1)
    i = h0
    while i < b and p[i] != 59:  # ';'
        i += 1
    if x >= 0:
        out[x + V_S1] = s1
        out[x + V_S2] = s2
        out[x + V_T0] = t0
        out[x + V_T1] = t1
        out[x + V_H0] = h0
        out[x + V_SEMI] = i
    if strict:
        if _hostport(p, h0, i) & BAD:
            return False
        return _params(p, i, b, b"branch", out, O_VB0 if first else -1)
    return True


@cython.cclass
class _Spans:
    """The full parser's entries to the lenient walks, over one span array bound once (a typed buffer
    acquired per call costs more than a short walk)."""
    out: cython.longlong[:]
    arr = cython.declare(object)

    def __init__(self):
        from array import array
        self.arr = array("q", bytes(8 * 16))
        self.out = self.arr

    def uri(self, s: bytes) -> object:
        """The lenient ``_uri`` walk over all of s: None when s is no URI, else (well-formed (before the
        parameters), kind, scheme colon, last '@' (-1), user end, parameters start, headers '?' (or len(s)),
        host end, port or None).  A port past MAX_PORT reads its value (MAX_LIMIT + 1 past that)."""
        p: cython.p_uchar
        out: cython.longlong[:] = self.out
        code: cython.int
        r: cython.longlong
        if cython.compiled:
            p = cython.cast(cython.p_uchar, s)
        else:
            p = s
        out[U_N] = -1
        out[U_N + 1] = -1
        out[U_HP] = 0
        code = _uri(p, 0, len(s), out, U_N, U_N + 2, 0, False)
        if code < 0:
            return None
        r = out[U_HP]
        return (code == 1, out[U_KIND], out[U_COLON], out[U_AT], out[U_N + 1], out[U_SEMI], out[U_Q],
                r & LOW32, _port_of(s, r, out[U_SEMI]))

    def name_addr(self, s: bytes) -> object:
        """The lenient ``_name_addr`` walk over all of s: None when a quoted display name is unterminated,
        else (closing '"' or -1, '<' or -1, '>' or -1, the addr-spec's end, '?' or ',' in it)."""
        p: cython.p_uchar
        out: cython.longlong[:] = self.out
        if cython.compiled:
            p = cython.cast(cython.p_uchar, s)
        else:
            p = s
        if _name_addr(p, 0, len(s), out, -1, -1, -1, b"", 0, False) == -2:
            return None
        return (out[N_Q], out[N_LT], out[N_GT], out[N_SEMI], out[N_SPEC] == 1)

    def via(self, s: bytes) -> object:
        """The lenient ``_via`` walk over all of s: None without two '/', else (first '/', second '/',
        transport start, transport end, sent-by start, its end)."""
        p: cython.p_uchar
        out: cython.longlong[:] = self.out
        if cython.compiled:
            p = cython.cast(cython.p_uchar, s)
        else:
            p = s
        _via(p, 0, len(s), out, False, 0, False)
        if out[V_S1] < 0:
            return None
        return (out[V_S1], out[V_S2], out[V_T0], out[V_T1], out[V_H0], out[V_SEMI])


_SPANS = _Spans()
uri_spans = _SPANS.uri
name_addr_spans = _SPANS.name_addr
via_spans = _SPANS.via


@cython.cfunc
@cython.exceptval(check=False)
def _comma(p: cython.p_uchar, i: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The one list walk: the next ',' at or after i outside quoted strings (``_quoted``) and <>; b when none."""
    ina: cython.bint = False
    c: cython.uchar
    while i < b:
        c = p[i]
        if c == 34:  # '"'
            i = _quoted(p, i + 1, b, False)
            if i < 0:
                return b
        elif c == 60:  # '<'
            ina = True
        elif c == 62:  # '>'
            ina = False
        elif c == 44 and not ina:
            return i
        i += 1
    return b


def comma_spans(s: bytes) -> list:
    """``_comma`` over all of s, for the full parser: the offsets of the separating commas."""
    p: cython.p_uchar
    n: cython.Py_ssize_t = len(s)
    i: cython.Py_ssize_t = 0
    if cython.compiled:
        p = cython.cast(cython.p_uchar, s)
    else:
        p = s
    cuts = []
    while True:
        i = _comma(p, i, n)
        if i >= n:
            return cuts
        cuts.append(i)
        i += 1


def scan(buf: bytes, out: cython.longlong[:], stream: cython.bint) -> cython.int:
    """Locate a typical message's fields; 1 on success, 0 = use the full parser.

    For ``stream`` the message may be followed by more data (Content-Length
    frames it) and -1 means "incomplete, wait for more bytes"."""
    return _scan(buf, out, stream)


@cython.cfunc
def _scan(buf: bytes, out: cython.longlong[:], stream: cython.bint) -> cython.int:
    """See ``scan``."""
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, buf)
    else:
        p = buf
    return _scan_p(p, len(buf), out, stream)


@cython.cfunc
def _scan_p(p: cython.p_uchar, n: cython.Py_ssize_t, out: cython.longlong[:], stream: cython.bint) -> cython.int:
    """``scan`` over n bytes at p (offsets in ``out`` are relative to p)."""
    i: cython.Py_ssize_t
    k: cython.Py_ssize_t
    e: cython.Py_ssize_t
    ls: cython.Py_ssize_t
    c0: cython.Py_ssize_t
    v0: cython.Py_ssize_t
    v1: cython.Py_ssize_t
    hend: cython.Py_ssize_t = -1
    seen: cython.long = 0
    bit: cython.long
    nh: cython.int = 0
    cl: cython.longlong
    num: cython.longlong
    w: cython.ulong
    m: cython.ulong
    lines: cython.Py_ssize_t[130]   # the CRs ending the start line and the first MAX_HEADERS + 1 header lines:
    #                                 the walk below reads at most that many (one past MAX_HEADERS fails)
    nl: cython.int = 0
    c1: cython.uchar
    if len(out) < NOUT:
        raise ValueError("scan: output array too small")
    for k in range(NOUT):
        out[k] = -1
    if n < 16:
        return 0
    # header block end; only CRLF line ends and ASCII in the header block.  Compiled, eight bytes at a
    # time up to the first byte below 0x0E or from 0x80 (the lowest such byte of a word is exact: the
    # borrow of "x - 0x0E" runs upwards only), and each line's CR noted for the line walk below: one pass
    i = 0
    while i + 3 < n:
        if cython.compiled and _SWAR and i + 8 <= n:
            memcpy(cython.address(w), p + i, 8)
            m = (((w - _W0E) & ~w) | w) & _W80
            if m == 0:
                i += 8
                continue
            i += cython.cast(cython.Py_ssize_t, (((m & (~m + 1)) - 1) & _W01) * _W01 >> 56) - 1   # its lowest flagged byte
            if i + 3 >= n:
                break
        if p[i] == 13:
            if p[i + 1] != 10:
                return 0
            if cython.compiled:
                if nl < 130:
                    lines[nl] = i
                nl += 1
            if p[i + 2] == 13 and p[i + 3] == 10:
                hend = i
                break
            i += 2
            continue
        elif p[i] == 10 or p[i] >= 128 or p[i] == 0:
            return 0
        i += 1
    if hend < 0:
        return -1 if stream and n < 65536 else 0
    out[O_HEND] = hend
    out[O_BODY] = hend + 4
    # start line
    if cython.compiled:
        e = lines[0]
    else:
        e = 0
        while p[e] != 13:
            e += 1
    if e >= 8 and p[0] == 83 and p[1] == 73 and p[2] == 80 and _eq(p, 0, 8, b"sip/2.0 "):
        # "SIP/2.0 DDD reason" (the full parser tells responses by a literal "SIP/")
        out[O_REQ] = 0
        if e < 12 or p[11] != 32:
            return 0
        num = _digits(p, 8, 11, 699)
        if num < 100:
            return 0
        out[O_STATUS] = num
        out[O_R0] = 12
        out[O_R1] = e
    else:
        out[O_REQ] = 1
        i = 0
        while i < e and _tok(p[i]):
            i += 1
        if i == 0 or i >= e or p[i] != 32:
            return 0
        out[O_M0] = 0
        out[O_M1] = i
        i += 1
        k = i
        while i < e and p[i] != 32:
            i += 1
        if i >= e or _uri(p, k, i, out, -1, -1, -1, True) != 1:
            return 0
        out[O_U0] = k
        out[O_U1] = i
        if e - i != 8 or not _eq(p, i + 1, e, b"sip/2.0"):
            return 0
    # header lines
    ls = e + 2
    while ls < hend + 2:
        if cython.compiled:
            e = lines[nh + 1]
        else:
            e = ls
            while p[e] != 13:
                e += 1
        if p[ls] == 32 or p[ls] == 9:
            return 0  # folding
        nh += 1
        if nh > MAX_HEADERS:
            return 0
        c0 = ls
        while c0 < e and _tok(p[c0]):
            c0 += 1
        if c0 == ls or c0 >= e or p[c0] != 58:
            return 0  # no colon straight after a token name
        v0 = c0 + 1
        while v0 < e and (p[v0] == 32 or p[v0] == 9):
            v0 += 1
        v1 = e
        while v1 > v0 and (p[v1 - 1] == 32 or p[v1 - 1] == 9):
            v1 -= 1
        bit = 0
        k = c0 - ls
        c1 = _lower(p[ls])    # the name's first byte, tested before its length's literal is compared
        if (k == 3 or k == 1) and c1 == 118 and (k == 1 or _eq(p, ls, c0, b"via")):
            if not _via(p, v0, v1, out, (seen & H_VIA) == 0, -1, True):
                return 0
            seen |= H_VIA
        elif (k == 4 or k == 1) and c1 == 102 and (k == 1 or _eq(p, ls, c0, b"from")):
            bit = H_FROM
            if _name_addr(p, v0, v1, out, O_FU0, O_FH0, O_FT0, b"tag", -1, True) != 1:
                return 0
        elif (k == 2 or k == 1) and c1 == 116 and (k == 1 or _eq(p, ls, c0, b"to")):
            bit = H_TO
            if _name_addr(p, v0, v1, out, O_TU0, O_TH0, O_TT0, b"tag", -1, True) != 1:
                return 0
        elif (k == 7 and c1 == 99 and _eq(p, ls, c0, b"call-id")) or (k == 1 and c1 == 105):
            bit = H_CALLID
            if v0 == v1:
                return 0
            for i in range(v0, v1):
                if p[i] == 32 or p[i] == 9:
                    return 0
            out[O_CID0] = v0
            out[O_CID1] = v1
        elif k == 4 and c1 == 99 and _eq(p, ls, c0, b"cseq"):
            bit = H_CSEQ
            i = v0
            while i < v1 and p[i] != 32:
                i += 1
            num = _digits(p, v0, i, MAX_CSEQ)
            if num < 0 or i >= v1:
                return 0
            out[O_CSEQ] = num
            i += 1
            k = i
            while i < v1 and _tok(p[i]):
                i += 1
            if i != v1 or k == v1:
                return 0
            out[O_CSM0] = k
            out[O_CSM1] = v1
        elif (k == 14 and c1 == 99 and _eq(p, ls, c0, b"content-length")) or (k == 1 and c1 == 108):
            bit = H_CL
            cl = _digits(p, v0, v1, 1 << 40)
            if cl < 0:
                return 0
            out[O_CL] = cl
        elif (k == 12 or k == 1) and c1 == 99 and (k == 1 or _eq(p, ls, c0, b"content-type")):
            bit = H_CT
            out[O_CT0] = v0
            out[O_CT1] = v1
        elif k == 12 and c1 == 109 and _eq(p, ls, c0, b"max-forwards"):
            bit = H_MAXFWD
            if _digits(p, v0, v1, MAX_FORWARDS) < 0:
                return 0
        elif k == 10 and c1 == 117 and _eq(p, ls, c0, b"user-agent"):
            if out[O_UA0] >= 0:
                return 0
            out[O_UA0] = v0
            out[O_UA1] = v1
        elif k == 6 and c1 == 115 and _eq(p, ls, c0, b"server"):
            if out[O_SV0] >= 0:
                return 0
            out[O_SV0] = v0
            out[O_SV1] = v1
        elif k == 5 and c1 == 120 and _eq(p, ls, c0, b"x-cid"):
            if out[O_XC0] < 0:
                out[O_XC0] = v0
                out[O_XC1] = v1
        elif k == 17 and c1 == 112 and _eq(p, ls, c0, b"p-charging-vector"):
            if out[O_PC0] < 0:
                if not _pcv(p, v0, v1, out):
                    return 0
        elif (k == 7 and c1 == 99 and _eq(p, ls, c0, b"contact")) or (k == 1 and c1 == 109):
            if not (v1 - v0 == 1 and p[v0] == 42) and not _contact(p, v0, v1, out):
                return 0
        elif (k == 7 and c1 == 101 and _eq(p, ls, c0, b"expires")) or (k == 4 and c1 == 100 and _eq(p, ls, c0, b"date")):
            return 0  # value rules live in the full parser
        elif k == 1:
            return 0  # other compact forms: let the full parser map them
        if bit:
            if seen & bit:
                return 0  # repeated single-valued header
            seen |= bit
        ls = e + 2
    if (seen & H_REQUIRED) != H_REQUIRED:
        return 0
    if out[O_REQ] == 1:
        # CSeq method must be the request method
        if out[O_CSM1] - out[O_CSM0] != out[O_M1]:
            return 0
        for i in range(out[O_M1]):
            if p[out[O_CSM0] + i] != p[i]:
                return 0
    if out[O_UA0] < 0 and out[O_SV0] >= 0:
        out[O_UA0] = out[O_SV0]
        out[O_UA1] = out[O_SV1]
    cl = out[O_CL]
    if cl >= 0 and hend + 4 + cl > n:
        return -1 if stream else 0
    if cl < 0 and stream:
        return 0
    out[O_SEEN] = seen
    return 1


@cython.cfunc
@cython.exceptval(check=False)
def _contact(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, out: cython.longlong[:]) -> cython.bint:
    """One plain Contact value (``_name_addr``, whose strict mode fails on a ',' outside quotes: several
    contacts are the full parser's); an expires parameter must be a small number."""
    out[O_SCR0] = -1
    out[O_SCR1] = -1
    if _name_addr(p, a, b, out, -1, -1, O_SCR0, b"expires", -1, True) != 1:
        return False
    if out[O_SCR0] >= 0 and _digits(p, out[O_SCR0], out[O_SCR1], MAX_DELTA) < 0:
        return False
    return True


@cython.cfunc
@cython.exceptval(check=False)
def _pcv(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, out: cython.longlong[:]) -> cython.bint:
    """P-Charging-Vector: icid-value=X;... (RFC 7315); locate icid-value, quotes stripped."""
    i: cython.Py_ssize_t = a
    k: cython.Py_ssize_t
    v0: cython.Py_ssize_t
    if b - a < 11 or not _eq(p, a, a + 11, b"icid-value="):
        return False
    i = a + 11
    v0 = i
    if i < b and p[i] == 34:
        v0 = i + 1
        i = _quoted(p, v0, b, True)
        if i < 0:
            return False
        for k in range(v0, i):
            if p[k] == 59:  # ';' (the parser's parameter walk does not know quotes)
                return False
        out[O_PC0] = v0
        out[O_PC1] = i
        i += 1
    else:
        while i < b and p[i] != 59 and p[i] != 32:
            i += 1
        if i == v0:
            return False
        out[O_PC0] = v0
        out[O_PC1] = i
    while i < b and p[i] != 59:
        if p[i] != 32:
            return False
        i += 1
    return True




@cython.cfunc
def _s(buf: bytes, a: cython.longlong, b: cython.longlong):
    if a < 0:
        return None
    return buf[a:b].decode("latin-1")


def fields(buf: bytes, out: cython.longlong[:]) -> dict:
    """The record fields of a message ``scan`` accepted (names as in the record schema)."""
    return _fields(buf, out)


@cython.cclass
class Scanner:
    """``scan`` and ``fields`` over one output array bound once: a typed buffer is
    acquired per call otherwise, which costs as much as a short scan."""
    out: cython.longlong[:]
    arr = cython.declare(object, visibility="readonly")

    def __init__(self):
        from array import array
        self.arr = array("q", bytes(8 * NOUT))
        self.out = self.arr

    def scan(self, buf: bytes, stream: cython.bint) -> cython.int:
        return _scan(buf, self.out, stream)

    def fields(self, buf: bytes) -> dict:
        return _fields(buf, self.out)

    def scan_at(self, buf: bytes, off: cython.Py_ssize_t, n: cython.Py_ssize_t, stream: cython.bint) -> cython.int:
        """``scan`` of buf[off:off + n] without copying it (offsets relative to off)."""
        if off < 0 or n < 0 or off + n > len(buf):
            raise ValueError("scan_at: range outside the buffer")
        if cython.compiled:
            return _scan_p(cython.cast(cython.p_uchar, buf) + off, n, self.out, stream)
        return _scan(buf[off:off + n], self.out, stream)


@cython.cfunc
def _scan_at(out: cython.longlong[:], p: cython.p_uchar, n: cython.Py_ssize_t, stream: cython.bint) -> cython.int:
    """Scanner.scan_at for compiled callers (sip/scan_cy.pxd): a C call, p and n checked by the caller."""
    return _scan_p(p, n, out, stream)


@cython.cfunc
def _fields(buf: bytes, out: cython.longlong[:]) -> dict:
    req: cython.bint = out[O_REQ] == 1
    return {
        # <fields:scan> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        "method": _s(buf, out[O_M0], out[O_M1]) if req else None,
        "status_code": None if req else out[O_STATUS],
        "reason_phrase": None if req else _s(buf, out[O_R0], out[O_R1]),
        "request_uri": _s(buf, out[O_U0], out[O_U1]) if req else None,
        "call_id": _s(buf, out[O_CID0], out[O_CID1]),
        "cseq_num": out[O_CSEQ],
        "cseq_method": _s(buf, out[O_CSM0], out[O_CSM1]),
        "from_user": _s(buf, out[O_FU0], out[O_FU1]),
        "from_host": _s(buf, out[O_FH0], out[O_FH1]),
        "from_tag": _s(buf, out[O_FT0], out[O_FT1]),
        "to_user": _s(buf, out[O_TU0], out[O_TU1]),
        "to_host": _s(buf, out[O_TH0], out[O_TH1]),
        "to_tag": _s(buf, out[O_TT0], out[O_TT1]),
        "via_branch": _s(buf, out[O_VB0], out[O_VB1]),
        "user_agent": _s(buf, out[O_UA0], out[O_UA1]),
        "content_type": _s(buf, out[O_CT0], out[O_CT1]),
        "correlation_id": _s(buf, out[O_XC0], out[O_XC1]) if out[O_XC0] >= 0 else _s(buf, out[O_PC0], out[O_PC1]),
        "fingerprint": fingerprint(
            buf[out[O_M0]:out[O_M1]] if req else b"%d" % out[O_STATUS],
            (buf[out[O_CID0]:out[O_CID1]] if out[O_CID0] >= 0 else b""),
            b"%d" % out[O_CSEQ],
            (buf[out[O_CSM0]:out[O_CSM1]] if out[O_CSM0] >= 0 else b""),
            (buf[out[O_VB0]:out[O_VB1]] if out[O_VB0] >= 0 else b""),
            (buf[out[O_FT0]:out[O_FT1]] if out[O_FT0] >= 0 else b""),
            (buf[out[O_TT0]:out[O_TT1]] if out[O_TT0] >= 0 else b""),
            buf[out[O_BODY]:min(out[O_BODY] + out[O_CL] if out[O_CL] >= 0 else len(buf), out[O_BODY] + 64)],
        ),
        # </fields:scan>
    }
