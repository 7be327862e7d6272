"""The media section of a call summary record (issue 16), from that call's final media records.

Why not a stage: the SIP stage owns call records.  The media stage keeps one running summary per
call (``new_summary`` / ``add``) and puts it on the call's record when the record is made, or, while
the call's streams still run (a BYE's linger), holds the record until they end
(``MediaStage.hold_call``).  With fanout workers a stream on another worker than its call's SIP sends its
``part`` to the call's worker when it ends (``discovery.stream_out``).
"""
from __future__ import annotations

from typing import Iterable

# its schema is the call record's (sip/fields.py CALL_MEDIA); tests/agent/media/test_call_media.py checks
# the records made here against it


def new_summary() -> dict:
    return {"streams": 0, "worst_mos": None, "worst_r_factor": None, "max_jitter_ms": None,
            "max_rtt_ms": None, "to_caller": {"packets": 0, "lost": 0}, "to_callee": {"packets": 0, "lost": 0}}


# what of a final media record the summary reads (``part``), in this order; the media fields it takes the
# worst of, each to its summary key
PART = ("direction", "packets", "lost", "mos", "r_factor", "max_jitter_ms", "rtt_ms")
_WORST = (("worst_mos", 3, min), ("worst_r_factor", 4, min), ("max_jitter_ms", 5, max), ("max_rtt_ms", 6, max))


def part(r: dict) -> list:
    """A final media record's part of its call's summary, as a JSON-able list (``PART``): what a fanout
    worker holding the stream sends the worker making the call's record."""
    return [r.get(k) for k in PART]


def valid_part(p: object) -> bool:
    """Whether ``p`` is a ``part`` as another worker sends it (after JSON): anything else is refused."""
    if not isinstance(p, list) or len(p) != len(PART) or not (p[0] is None or isinstance(p[0], str)):
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in p[1:3]):
        return False
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in p[3:])


def add(out: dict, r: dict) -> None:
    """One media record into a call's summary; interim records are not counted."""
    if r.get("type") != "media" or not r.get("final"):
        return
    add_part(out, part(r))


def add_part(out: dict, p: list) -> None:
    """One stream's ``part`` into a call's summary (the same sums and extremes whatever the order)."""
    out["streams"] += 1
    for key, i, pick in _WORST:
        v = p[i]
        if v is not None:
            out[key] = v if out[key] is None else pick(out[key], v)
    d = out.get(p[0] or "")
    if isinstance(d, dict):
        d["packets"] += p[1]
        d["lost"] += max(0, p[2])


def call_media_summary(records: Iterable[dict]) -> dict:
    """``{"streams", "worst_mos", "worst_r_factor", "max_jitter_ms", "max_rtt_ms",
    "to_caller": {packets, lost}, "to_callee": {...}}``; interim records are ignored."""
    out = new_summary()
    for r in records:
        add(out, r)
    return out
