"""The media section of a call summary record, from that call's final media records.

Why a helper and not a stage: the dialog tracker owns call records; it calls this with the
media records of one Call-ID when it writes the call's summary.
"""
from __future__ import annotations

from typing import Iterable


def call_media_summary(records: Iterable[dict]) -> dict:
    """``{"streams", "worst_mos", "worst_r_factor", "max_jitter_ms", "max_rtt_ms",
    "to_caller": {packets, lost}, "to_callee": {...}}``; interim records are ignored."""
    out: dict = {"streams": 0, "worst_mos": None, "worst_r_factor": None, "max_jitter_ms": None,
                 "max_rtt_ms": None, "to_caller": {"packets": 0, "lost": 0}, "to_callee": {"packets": 0, "lost": 0}}
    for r in records:
        if r.get("type") != "media" or not r.get("final"):
            continue
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
    return out
