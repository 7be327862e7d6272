# cython: boundscheck=True, wraparound=True
# (general Python code: keep Python indexing semantics when compiled)
"""SDP (RFC 8866) for call records, and the SDP part of multipart bodies.

Only what VoIP engineers look for in a capture: origin, connection address
(session and per media), media lines (type, port, protocol, payload types)
and rtpmap.  Unknown lines are ignored; a body that is not SDP gives None.

Parsed once: ``_scan_sdp`` walks the body and fills the offsets laid out in
``sip/sdpspans.pxd``; two emitters read them, ``_sdp_dict`` here (the record's
dict, the general path) and ``writer_cy._sdp`` (JSON bytes, the compiled lane,
which ``cimport``s the scanner through ``sip/sdp_cy.pxd``).  The text is read as
Python reads ``body.decode()`` (else latin-1): lines end at LF, trailing CRs are
dropped, fields are split on what ``str.split()`` calls whitespace in that
encoding (``_ws``), and a port is 1-5 ASCII digits.
"""
from __future__ import annotations

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]
if cython.compiled:   # the one definition: sip/sdpspans.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.sip.sdpspans import *  # noqa: F403
else:
    from otus_agent.sip.sdpspans import *  # noqa: F403
if cython.compiled:
    from cython.cimports.libc.string import memchr, memcpy

_HIGH8 = cython.declare(cython.longlong, -0x7F7F7F7F7F7F7F80)     # 0x8080808080808080: the top bit of 8 bytes

MAX_PARTS = 16


def _classes() -> bytes:
    """Per byte: 1 ASCII whitespace (``str.isspace``), 2 past ASCII (whitespace or not by the encoding: ``_ws``),
    0 other."""
    return bytes(2 if c >= 0x80 else int(chr(c).isspace()) for c in range(256))


_CLASSES = cython.declare(bytes, _classes())
_CLS = cython.declare(cython.p_uchar)
if cython.compiled:
    _CLS = cython.cast(cython.p_uchar, _CLASSES)
else:
    _CLS = _CLASSES


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _ws(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.int:
    """Bytes of the whitespace character (``str.isspace``) at p[i] in the body's encoding; 0: none."""
    c: cython.uchar = p[i]
    d: cython.uchar
    f: cython.uchar
    if c < 0x80:
        return _CLS[c]
    if enc == 2:                       # latin-1: NEL, NBSP
        return 1 if c == 0x85 or c == 0xA0 else 0
    if enc != 1:
        return 0
    if c == 0xC2:                      # U+0085, U+00A0
        return 2 if i + 1 < e and (p[i + 1] == 0x85 or p[i + 1] == 0xA0) else 0
    if i + 2 >= e or c < 0xE1 or c > 0xE3:
        return 0
    d = p[i + 1]
    f = p[i + 2]
    if c == 0xE1:                      # U+1680
        return 3 if d == 0x9A and f == 0x80 else 0
    if c == 0xE3:                      # U+3000
        return 3 if d == 0x80 and f == 0x80 else 0
    if d == 0x80:                      # U+2000-200A, U+2028, U+2029, U+202F
        return 3 if 0x80 <= f <= 0x8A or f == 0xA8 or f == 0xA9 or f == 0xAF else 0
    return 3 if d == 0x81 and f == 0x9F else 0     # U+205F


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _wsk(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.Py_ssize_t:
    """The first non-whitespace at or after i (e when none)."""
    w: cython.int
    c: cython.uchar
    while i < e:
        c = _CLS[p[i]]
        if c == 1:
            i += 1
            continue
        if c == 0:
            break
        w = _ws(p, i, e, enc)
        if w == 0:
            break
        i += w
    return i


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _tke(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.Py_ssize_t:
    """The end of the field starting at i: the next whitespace, or e.  Byte steps are safe in UTF-8: a
    continuation byte is never the start of a whitespace character."""
    c: cython.uchar
    while i < e:
        c = _CLS[p[i]]
        if c == 1 or (c == 2 and _ws(p, i, e, enc)):
            break
        i += 1
    return i


@cython.cfunc
@cython.exceptval(check=False)
def _skip_ws(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.Py_ssize_t:
    """``_wsk`` for the JSON emitter."""
    return _wsk(p, i, e, enc)


@cython.cfunc
@cython.exceptval(check=False)
def _skip_tok(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.Py_ssize_t:
    """``_tke`` for the JSON emitter."""
    return _tke(p, i, e, enc)


@cython.cfunc
@cython.exceptval(check=False)
def _last_end(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int) -> cython.Py_ssize_t:
    """The end of the last field of p[i:e], i at a field or e (the right end of ``str.strip()``)."""
    end: cython.Py_ssize_t = i
    while i < e:
        i = _tke(p, i, e, enc)
        end = i
        i = _wsk(p, i, e, enc)
    return end


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _until_slash(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    while a < b and p[a] != 47:
        a += 1
    return a


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _fields(p: cython.p_uchar, i: cython.Py_ssize_t, e: cython.Py_ssize_t, enc: cython.int, most: cython.int,
            f: cython.p_longlong) -> cython.int:
    """The first ``most`` whitespace-separated fields of p[i:e] (their spans in f); how many there are."""
    n: cython.int = 0
    i = _wsk(p, i, e, enc)
    while i < e and n < most:
        f[2 * n] = i
        i = _tke(p, i, e, enc)
        f[2 * n + 1] = i
        n += 1
        i = _wsk(p, i, e, enc)
    return n


@cython.cfunc
@cython.exceptval(check=False)
def _same(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, c: cython.Py_ssize_t) -> cython.bint:
    """p[a:b] == p[c:c + b - a]."""
    j: cython.Py_ssize_t
    for j in range(b - a):
        if p[a + j] != p[c + j]:
            return False
    return True


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _eol(p: cython.p_uchar, i: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """The next LF at or after i, or b."""
    r: cython.p_uchar
    if cython.compiled:
        r = cython.cast(cython.p_uchar, memchr(p + i, 10, b - i))
        return b if r == cython.NULL else r - p
    else:
        i = p.find(b"\n", i, b)
        return b if i < 0 else i


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _ascii(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.bint:
    """No byte of p[a:b] past 0x7f (compiled: eight at a time)."""
    hi: cython.uchar = 0
    i: cython.Py_ssize_t
    w: cython.longlong
    acc: cython.longlong = 0
    if cython.compiled:
        while a + 8 <= b:
            memcpy(cython.address(w), p + a, 8)
            acc |= w
            a += 8
        if acc & _HIGH8:
            return False
    for i in range(a, b):
        hi |= p[i]
    return hi < 0x80


@cython.cfunc
def _is(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, lit: bytes) -> cython.bint:
    """p[a:b] == lit."""
    j: cython.Py_ssize_t
    if b - a != len(lit):
        return False
    for j in range(b - a):
        if p[a + j] != lit[j]:
            return False
    return True


DIRECTIONS = (None, "sendrecv", "sendonly", "recvonly", "inactive")    # the slots' codes (sdpspans.pxd)


@cython.cfunc
def _direction(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.int:
    """The direction attribute p[a:b] names (RFC 8866 6.7), as SD_DIR codes; 0: none."""
    if b - a != 8:
        return 0
    if _is(p, a, b, b"sendrecv"):
        return 1
    if _is(p, a, b, b"sendonly"):
        return 2
    if _is(p, a, b, b"recvonly"):
        return 3
    if _is(p, a, b, b"inactive"):
        return 4
    return 0


@cython.cfunc
@cython.exceptval(check=False)
def _scan_sdp(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t, s: cython.p_longlong) -> cython.bint:
    """Fill s (sip/sdpspans.pxd) from the SDP in p[a:b]; False when it is not SDP (no leading "v=").

    The encoding is the whole body's (``_encoding``), looked at once, when a line read has a byte
    past ASCII: until then, and for ever on most bodies, ASCII bytes split the same in every one."""
    f: cython.longlong[12]
    ls: cython.Py_ssize_t
    le: cython.Py_ssize_t
    ve: cython.Py_ssize_t
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    sp: cython.Py_ssize_t
    c: cython.uchar
    n: cython.int
    m: cython.Py_ssize_t
    r: cython.Py_ssize_t
    port: cython.longlong
    cur: cython.Py_ssize_t = -1        # the current media's first slot, -1: none
    nmedia: cython.int = 0
    nrtp: cython.int = 0
    enc: cython.int = -1               # not looked at yet
    rtp: cython.bint
    if not cython.compiled:
        f = [0] * 12
    if b - a < 2 or p[a] != 118 or p[a + 1] != 61:      # "v="
        return False
    for i in range(SD_OU0, SD_C1 + 1):
        s[i] = -1
    s[SD_DIR] = 0
    s[SD_MUX] = 0
    ls = a
    while ls < b:
        le = _eol(p, ls, b)
        if le - ls >= 2 and p[ls + 1] == 61:
            ve = le
            while ve > ls + 2 and p[ve - 1] == 13:
                ve -= 1
            c = p[ls]
            rtp = c == 97 and cur >= 0 and ve - ls >= 9 and p[ls + 2] == 114 and p[ls + 3] == 116 and \
                p[ls + 4] == 112 and p[ls + 5] == 109 and p[ls + 6] == 97 and p[ls + 7] == 112 and p[ls + 8] == 58
            if enc < 0 and (c == 109 or c == 99 or c == 111 or rtp) and not _ascii(p, ls, ve):
                enc = _encoding(p, a, b)
            if c == 109:                                 # m=<media> <port> <proto> <fmt> ...
                cur = -1
                if nmedia < MAX_MEDIA and _fields(p, ls + 2, ve, enc, 3, f) == 3:
                    cur = SD_MEDIA + MW * nmedia
                    nmedia += 1
                    s[cur + M_T0] = f[0]
                    s[cur + M_T1] = f[1]
                    j = _until_slash(p, f[2], f[3])
                    port = -1
                    if 0 < j - f[2] <= 5:
                        port = 0
                        for i in range(f[2], j):
                            if p[i] < 48 or p[i] > 57:
                                port = -1
                                break
                            port = port * 10 + p[i] - 48
                    s[cur + M_PORT] = port
                    s[cur + M_P0] = f[4]
                    s[cur + M_P1] = f[5]
                    s[cur + M_PL0] = _wsk(p, f[5], ve, enc)
                    s[cur + M_PL1] = ve
                    s[cur + M_CONN] = 0
                    s[cur + M_R] = nrtp
                    s[cur + M_RN] = 0
                    s[cur + M_DIR] = 0
                    s[cur + M_RC0] = -1
                    s[cur + M_RC1] = -1
                    s[cur + M_MUX] = 0
            elif c == 99:                                # c=<nettype> <addrtype> <address>[/...]
                n = _fields(p, ls + 2, ve, enc, 3, f)
                i = -1
                j = -1
                if n == 3:
                    i = f[4]
                    j = _until_slash(p, f[4], f[5])
                if cur >= 0:
                    if s[cur + M_CONN] == 0:
                        s[cur + M_CONN] = 1 if s[cur + M_RN] == 0 else 2
                    s[cur + M_C0] = i
                    s[cur + M_C1] = j
                else:
                    s[SD_C0] = i
                    s[SD_C1] = j
            elif c == 111:                               # o=<user> <id> <version> <nettype> <addrtype> <addr>
                if _fields(p, ls + 2, ve, enc, 6, f) == 6:
                    s[SD_OU0] = f[0]
                    s[SD_OU1] = f[1]
                    s[SD_OI0] = f[2]
                    s[SD_OI1] = f[3]
                    s[SD_OV0] = f[4]
                    s[SD_OV1] = f[5]
                    s[SD_OA0] = f[10]
                    s[SD_OA1] = f[11]
            elif rtp:                                    # a=rtpmap:<payload type> <encoding>
                sp = ls + 9
                while sp < ve and p[sp] != 32:
                    sp += 1
                if ls + 9 < sp < ve:
                    i = _wsk(p, sp + 1, ve, enc)
                    if enc <= 0:                         # an ASCII line: strip it from the right
                        j = ve
                        while j > i and p[j - 1] <= 32 and _ws(p, j - 1, ve, 0):
                            j -= 1
                    else:
                        j = _last_end(p, i, ve, enc)
                    r = -1
                    for m in range(s[cur + M_R], s[cur + M_R] + s[cur + M_RN]):   # a repeated type: its last value
                        if s[SD_RTP + RW * m + R_K1] - s[SD_RTP + RW * m + R_K0] == sp - ls - 9 and \
                                _same(p, ls + 9, sp, s[SD_RTP + RW * m + R_K0]):
                            r = SD_RTP + RW * m
                            break
                    if r < 0 and nrtp < MAX_RTPMAP:
                        r = SD_RTP + RW * nrtp
                        nrtp += 1
                        s[cur + M_RN] += 1
                        s[r + R_K0] = ls + 9
                        s[r + R_K1] = sp
                    if r >= 0:
                        s[r + R_V0] = i
                        s[r + R_V1] = j
            elif c == 97:                                # a=<direction> | a=rtcp-mux | a=rtcp:<value>
                n = _direction(p, ls + 2, ve)
                if n:
                    s[cur + M_DIR if cur >= 0 else SD_DIR] = n
                elif _is(p, ls + 2, ve, b"rtcp-mux"):
                    s[cur + M_MUX if cur >= 0 else SD_MUX] = 1
                elif cur >= 0 and ve - ls > 7 and _is(p, ls + 2, ls + 7, b"rtcp:") and _ascii(p, ls + 7, ve):
                    i = _wsk(p, ls + 7, ve, 0)
                    j = ve
                    while j > i and _ws(p, j - 1, ve, 0):
                        j -= 1
                    if j > i:
                        s[cur + M_RC0] = i
                        s[cur + M_RC1] = j
        ls = le + 1
    s[SD_ENC] = enc if enc > 0 else 0
    s[SD_NMEDIA] = nmedia
    s[SD_NRTP] = nrtp
    return True


@cython.cfunc
def _encoding(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.int:
    """0: ASCII; 1: UTF-8 (what ``bytes.decode()`` accepts); 2: anything else, read as latin-1."""
    i: cython.Py_ssize_t
    for i in range(a, b):
        if p[i] >= 0x80:
            try:
                p[a:b].decode("utf-8")
            except UnicodeDecodeError:
                return 2
            return 1
    return 0


@cython.cfunc
def _text(p: cython.p_uchar, a: cython.longlong, b: cython.longlong, enc: cython.int):
    if a < 0:
        return None
    if enc == 1:
        return p[a:b].decode("utf-8")
    return p[a:b].decode("latin-1")


@cython.cfunc
def _sdp_dict(p: cython.p_uchar, s: cython.p_longlong) -> dict:
    """The record's ``sdp`` dict from the offsets ``_scan_sdp`` filled (the general path's emitter)."""
    enc: cython.int = cython.cast(cython.int, s[SD_ENC])
    k: cython.Py_ssize_t
    m: cython.Py_ssize_t
    r: cython.Py_ssize_t
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    e: cython.Py_ssize_t
    media = []
    for k in range(s[SD_NMEDIA]):
        m = SD_MEDIA + MW * k
        payloads = []
        i = s[m + M_PL0]
        e = s[m + M_PL1]
        while i < e:
            j = _tke(p, i, e, enc)
            payloads.append(_text(p, i, j, enc))
            i = _wsk(p, j, e, enc)
        d = {"type": _text(p, s[m + M_T0], s[m + M_T1], enc),
             "port": s[m + M_PORT] if s[m + M_PORT] >= 0 else None,
             "proto": _text(p, s[m + M_P0], s[m + M_P1], enc),
             "payloads": payloads}
        if s[m + M_CONN] == 1:
            d["connection"] = _text(p, s[m + M_C0], s[m + M_C1], enc)
        if s[m + M_RN]:
            rtpmap = {}
            for r in range(SD_RTP + RW * s[m + M_R], SD_RTP + RW * (s[m + M_R] + s[m + M_RN]), RW):
                rtpmap[_text(p, s[r + R_K0], s[r + R_K1], enc)] = _text(p, s[r + R_V0], s[r + R_V1], enc)
            d["rtpmap"] = rtpmap
        if s[m + M_CONN] == 2:
            d["connection"] = _text(p, s[m + M_C0], s[m + M_C1], enc)
        if s[m + M_DIR]:
            d["direction"] = DIRECTIONS[s[m + M_DIR]]
        if s[m + M_MUX]:
            d["rtcp_mux"] = True
        if s[m + M_RC0] >= 0:
            d["rtcp"] = _text(p, s[m + M_RC0], s[m + M_RC1], enc)
        media.append(d)
    out: dict = {"media": media}
    if s[SD_OU0] >= 0:
        out["origin"] = {"username": _text(p, s[SD_OU0], s[SD_OU1], enc),
                         "session_id": _text(p, s[SD_OI0], s[SD_OI1], enc),
                         "session_version": _text(p, s[SD_OV0], s[SD_OV1], enc),
                         "address": _text(p, s[SD_OA0], s[SD_OA1], enc)}
    if s[SD_C0] >= 0:
        out["connection"] = _text(p, s[SD_C0], s[SD_C1], enc)
    if s[SD_DIR]:
        out["direction"] = DIRECTIONS[s[SD_DIR]]
    if s[SD_MUX]:
        out["rtcp_mux"] = True
    return out


@cython.cfunc
def _parse(body: bytes, a: cython.Py_ssize_t, b: cython.Py_ssize_t):
    """Scan body[a:b], then the dict emitter."""
    p: cython.p_uchar
    sp: cython.longlong[NSDP]
    if cython.compiled:
        p = cython.cast(cython.p_uchar, body)
    else:
        p = body
        sp = [0] * NSDP
    if not _scan_sdp(p, a, b, sp):
        return None
    return _sdp_dict(p, sp)


def parse_sdp(body: bytes) -> dict | None:
    """The record's ``sdp`` of an SDP body; None when it is not SDP."""
    return _parse(body, 0, len(body))


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _ieq(p: cython.p_uchar, a: cython.Py_ssize_t, lit: bytes) -> cython.bint:
    """p[a:a + len(lit)] equals the lower-case ASCII ``lit``, ASCII letters in any case."""
    j: cython.Py_ssize_t
    c: cython.uchar
    for j in range(len(lit)):
        c = p[a + j]
        if 65 <= c <= 90:
            c += 32
        if c != lit[j]:
            return False
    return True


@cython.cfunc
@cython.exceptval(check=False)
def _sdp_kind(p: cython.p_uchar, a: cython.Py_ssize_t, b: cython.Py_ssize_t) -> cython.int:
    """The media type of the Content-Type value p[a:b] (UTF-8): 1 application/sdp, 2 multipart/..., 0 other.
    As ``ct.split(";", 1)[0].strip().lower()`` reads it (no other letter lower-cases to these ASCII ones);
    the one test, for ``sdp_span`` and the compiled lane."""
    e: cython.Py_ssize_t = a
    w: cython.int
    while e < b and p[e] != 59:        # ';'
        e += 1
    a = _wsk(p, a, e, 1)
    while e > a:                       # strip from the right: a whitespace character of 1 to 3 bytes ends at e
        for w in range(1, 4):
            if e - w >= a and _ws(p, e - w, e, 1) == w:
                e -= w
                break
        else:
            break
    if e - a >= 10 and _ieq(p, a, b"multipart/"):
        return 2
    if e - a == 15 and _ieq(p, a, b"application/sdp"):
        return 1
    return 0


def boundary_of(content_type: str) -> str | None:
    for p in content_type.split(";")[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "boundary":
            v = v.strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = v[1:-1]
            return v or None
    return None


def sdp_span(content_type: str | None, body: bytes) -> tuple[int, int] | None:
    """Where the SDP of a body is: all of an application/sdp body, or the first SDP part of a multipart one
    (nested multiparts included, at most MAX_PARTS parts each); None when there is none.  The one search
    for it: the general path (``sdp_from_body``) and the compiled lane's multipart case both use it."""
    if not body or not content_type:
        return None
    ctb = content_type.encode("utf-8", "surrogatepass")
    p: cython.p_uchar
    if cython.compiled:
        p = cython.cast(cython.p_uchar, ctb)
    else:
        p = ctb
    kind: cython.int = _sdp_kind(p, 0, len(ctb))
    if kind == 1:
        return (0, len(body)) if body.startswith(b"v=") else None
    if kind != 2:
        return None
    b = boundary_of(content_type)
    if not b:
        return None
    delim = b"--" + b.encode("utf-8", "replace")
    pos = body.find(delim)             # the parts are what body.split(delim)[1:] gives
    n = 0
    while pos >= 0 and n < MAX_PARTS:
        start = pos + len(delim)
        pos = body.find(delim, start)
        part = body[start:pos if pos >= 0 else len(body)]
        n += 1
        if part.startswith(b"--"):
            break
        e = part.find(b"\r\n\r\n")
        sep = 4
        if e < 0:
            e = part.find(b"\n\n")
            sep = 2
        if e < 0:
            continue
        pct = None
        for line in part[:e].decode("latin-1").lower().splitlines():
            if line.startswith("content-type:"):
                pct = line[13:].strip()
        inner = part[e + sep:]
        if inner.endswith(b"\r\n"):
            inner = inner[:-2]
        if pct is not None:
            found = sdp_span(pct, inner)
            if found is not None:
                return start + e + sep + found[0], start + e + sep + found[1]
    return None


def sdp_from_body(content_type: str | None, body: bytes) -> dict | None:
    """SDP from an application/sdp body or the first SDP part of a multipart body."""
    span = sdp_span(content_type, body)
    if span is None:
        return None
    return _parse(body, span[0], span[1])
