"""The message fingerprint (issue 18, part 5): one hash over what names a SIP message on the wire.

When two capture points see the same message (the caller's and the callee's sidecars, a node
agent), their records carry the same ``fingerprint``, so a consumer can fold them.  It is FNV-1a
(64-bit) over, NUL-separated in this order: the method (requests) or the status code in decimal
(responses), Call-ID, CSeq number in decimal, CSeq method, the topmost Via branch, the From and To
tags, then the first ``BODY_BYTES`` bytes of the body; as 16 hex digits.  An absent value is empty.
The start line and headers are taken as the record carries them (the values the general path and
the scanner agree on byte for byte; the record builder gets the parsed message, not its wire
bytes): a consumer can recompute the hash from a record and the body.  The tags tell forked
responses apart, the body's first bytes re-sent requests with another payload.  A retransmission is
the same message and has the same fingerprint: fold by fingerprint *and* time (a retransmission
comes after T1 = 500 ms at the earliest; the same packet at two capture points within milliseconds).

One definition of the hash (``_fnv``): ``fingerprint`` (bytes in: the general path through
``of_message``, the scanner's fields in ``sip/scan_cy.py``) and the compiled lane
(``sip/writer_cy.py``, which ``cimport``s ``_fnv``, ``_fnv_num`` and ``_hex`` through
``sip/fingerprint_cy.pxd`` and hashes the message in place) both use it; compiled by Cython like the
other ``*_cy`` modules, and equal in the pure build (tests/agent/sip/test_fingerprint.py).  FNV-1a
is not a keyed or cryptographic hash: two messages made to collide would be folded, which only a
consumer's deduplication would notice.
"""
try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

BODY_BYTES = 64
OFFSET = cython.declare(cython.ulonglong, 0xCBF29CE484222325)
PRIME = cython.declare(cython.ulonglong, 0x100000001B3)
MASK = cython.declare(cython.ulonglong, 0xFFFFFFFFFFFFFFFF)
_HEX = cython.declare(bytes, b"0123456789abcdef")
_HX = cython.declare(cython.p_uchar)     # its bytes (a C table: no Python index per digit)
if cython.compiled:
    _HX = cython.cast(cython.p_uchar, _HEX)
else:
    _HX = _HEX


@cython.cfunc
@cython.exceptval(check=False)
def _start() -> cython.ulonglong:
    return OFFSET


@cython.cfunc
@cython.exceptval(check=False)
def _fnv(h: cython.ulonglong, p: cython.p_uchar, a: cython.longlong, b: cython.longlong) -> cython.ulonglong:
    """FNV-1a of p[a:b] continuing from ``h`` (nothing when a < 0)."""
    j: cython.longlong
    if a < 0:
        return h
    for j in range(a, b):
        h = ((h ^ p[j]) * PRIME) & MASK
    return h


@cython.cfunc
@cython.exceptval(check=False)
def _fnv_num(h: cython.ulonglong, v: cython.longlong) -> cython.ulonglong:
    """FNV-1a of ``b"%d" % v`` continuing from ``h``."""
    tmp: cython.uchar[24]
    n: cython.int = 0
    if v < 0:
        h = ((h ^ 45) * PRIME) & MASK
        v = -v
    if v == 0:
        return ((h ^ 48) * PRIME) & MASK
    while v > 0:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    while n > 0:
        n -= 1
        h = ((h ^ tmp[n]) * PRIME) & MASK
    return h


@cython.cfunc
@cython.exceptval(check=False)
def _sep(h: cython.ulonglong) -> cython.ulonglong:
    """The NUL between two parts."""
    return (h * PRIME) & MASK


@cython.cfunc
@cython.exceptval(check=False)
def _hex(q: cython.p_uchar, k: cython.Py_ssize_t, h: cython.ulonglong) -> cython.Py_ssize_t:
    """``h`` as 16 lower-case hex digits at q[k:k + 16]."""
    i: cython.int
    for i in range(16):
        q[k + 15 - i] = _HX[h & 15]
        h >>= 4
    return k + 16


def fingerprint(start: bytes, call_id: bytes, cseq: bytes, cseq_method: bytes, branch: bytes, from_tag: bytes,
                to_tag: bytes, body: bytes) -> str:
    """The fingerprint of a message's parts (module docstring), each as bytes (empty when absent)."""
    h: cython.ulonglong = OFFSET
    first: cython.bint = True
    for part in (start, call_id, cseq, cseq_method, branch, from_tag, to_tag, body[:BODY_BYTES]):
        if not first:
            h = _sep(h)
        first = False
        if cython.compiled:
            h = _fnv(h, part, 0, len(part))
        else:
            for c in part:
                h = ((h ^ c) * PRIME) & MASK
    return "%016x" % h


def _b(s: str | None) -> bytes:
    return s.encode("utf-8", "surrogateescape") if s else b""


def of_message(m) -> str:
    """The fingerprint of a parsed ``SipMessage`` (the general path)."""
    if m.is_request:
        start = _b(m.method)
    else:
        start = b"%d" % m.status_code if m.status_code is not None else b""
    f, t = m.from_, m.to
    return fingerprint(start, _b(m.call_id), b"%d" % m.cseq_num if m.cseq_num is not None else b"",
                       _b(m.cseq_method), _b(m.via[0].params.get("branch") if m.via else None),
                       _b(f.params.get("tag") if f is not None else None),
                       _b(t.params.get("tag") if t is not None else None), m.body)
