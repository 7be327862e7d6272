"""The message fingerprint (issue 18, part 5): one hash over what names a SIP message on the wire.

When two capture points see the same message (the caller's and the callee's sidecars, a node
agent), their records carry the same ``fingerprint``, so a consumer can fold them.  The input is,
in this order and NUL-separated: the method (requests) or the status code (responses), Call-ID,
CSeq number, CSeq method, the topmost Via branch, the From and To tags, then the first
``BODY_BYTES`` bytes of the body.  The start line and headers are taken as the record carries them
(the values the general path and the scanner agree on byte for byte, and the record builder gets
the parsed message, not the wire bytes); the tags tell forked responses apart, the body's first
bytes re-sent requests with another payload.  An absent value is empty.  A retransmission is the
same message and has the same fingerprint: fold by fingerprint *and* time (a retransmission comes
after T1 = 500 ms at the earliest; the same packet at two capture points within milliseconds).

``fingerprint`` is the one hash (BLAKE2b, 8 bytes, hex): the general path (``of_message``), the
scanner's fields (``sip/scan_cy.py``) and the compiled lane (``sip/writer_cy.py``) all call it, so
compiled and pure builds agree; the code that gathers its inputs is generated from
``sip/fields.py``.
"""
from __future__ import annotations

from hashlib import blake2b

BODY_BYTES = 64


def fingerprint(start: bytes, call_id: bytes, cseq: bytes, cseq_method: bytes, branch: bytes, from_tag: bytes,
                to_tag: bytes, body: bytes) -> str:
    return blake2b(b"\0".join((start, call_id, cseq, cseq_method, branch, from_tag, to_tag, body[:BODY_BYTES])),
                   digest_size=8).hexdigest()


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
