"""The media section of a call summary record (issue 16), from that call's final media records.

Why not a stage: the SIP stage owns call records.  The media stage keeps one running summary per
call (``new_summary`` / ``add``) and puts it on the call's record when the record is made, or, while
the call's streams still run (a BYE's linger), holds the record until they end
(``MediaStage.hold_call``).
"""
from __future__ import annotations

from typing import Iterable

# its schema is the call record's (sip/fields.py CALL_MEDIA); tests/agent/media/test_call_media.py checks
# the records made here against it


def new_summary() -> dict:
    return {"streams": 0, "worst_mos": None, "worst_r_factor": None, "max_jitter_ms": None,
            "max_rtt_ms": None, "to_caller": {"packets": 0, "lost": 0}, "to_callee": {"packets": 0, "lost": 0}}


def add(out: dict, r: dict) -> None:
    """One media record into a call's summary; interim records are not counted."""
    if r.get("type") != "media" or not r.get("final"):
        return
    out["streams"] += 1
    for key, src, pick in (("worst_mos", "mos", min), ("worst_r_factor", "r_factor", min),
                           ("max_jitter_ms", "max_jitter_ms", max), ("max_rtt_ms", "rtt_ms", max)):
        v = r.get(src)
        if v is not None:
            out[key] = v if out[key] is None else pick(out[key], v)
    d = out.get(r.get("direction") or "")
    if isinstance(d, dict):
        d["packets"] += r["packets"]
        d["lost"] += max(0, r["lost"])


def call_media_summary(records: Iterable[dict]) -> dict:
    """``{"streams", "worst_mos", "worst_r_factor", "max_jitter_ms", "max_rtt_ms",
    "to_caller": {packets, lost}, "to_callee": {...}}``; interim records are ignored."""
    out = new_summary()
    for r in records:
        add(out, r)
    return out
