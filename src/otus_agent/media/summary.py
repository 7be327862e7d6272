"""The media section of a call summary record (issue 16), from that call's final media records.

Why not a stage: the SIP stage owns call records.  The media stage keeps one running summary per
call (``CallMedia``) and puts it on the call's record when the record is made, or, while
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
PART = ("direction", "packets", "lost", "mos", "r_factor", "max_jitter_ms", "rtt_ms", "ssrc", "start_ts", "end_ts")
_WORST = (("worst_mos", 3, min), ("worst_r_factor", 4, min), ("max_jitter_ms", 5, max), ("max_rtt_ms", 6, max))
P_SSRC, P_START, P_END = (PART.index(k) for k in ("ssrc", "start_ts", "end_ts"))   # a part's fields by name


def part(r: dict) -> list:
    """A final media record's part of its call's summary, as a JSON-able list (``PART``): what a fanout
    worker holding the stream sends the worker making the call's record."""
    return [r.get(k) for k in PART]


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def valid_part(p: object) -> bool:
    """Whether ``p`` is a ``part`` as another worker sends it (after JSON): anything else is refused."""
    if not isinstance(p, list) or len(p) != len(PART) or not (p[0] is None or isinstance(p[0], str)):
        return False
    if not all(_int(v) for v in p[1:3]) or not all(v is None or _int(v) for v in p[P_SSRC:]):
        return False
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in p[3:P_SSRC])


class CallMedia:
    """A call's running media section: streams counted, worst quality kept, packets and loss summed per
    direction over its media *paths*.

    A path is the streams of one direction with one SSRC whose times overlap: a media relay (rtpengine,
    by default) forwards a stream with its SSRC, so a capture point beside the proxy sees the same media
    on both legs, and summing them would count its packets and its loss twice.  The leg with the most
    loss stands for the path (the one further down, whose loss includes the leg before it).  A stream
    that keeps its SSRC on a new port after a re-INVITE does not overlap the old one: a path of its
    own.  The same section whatever order the streams end in."""

    __slots__ = ("section", "paths")

    def __init__(self) -> None:
        self.section = new_summary()
        # (direction, ssrc) -> paths: [start, end, packets, lost] of the leg standing for each
        self.paths: dict[tuple[str, int], list[list[int]]] = {}

    def add(self, r: dict) -> None:
        """One media record; interim records are not counted."""
        if r.get("type") == "media" and r.get("final"):
            self.add_part(part(r))

    def add_part(self, p: list) -> None:
        out = self.section
        out["streams"] += 1
        for key, i, pick in _WORST:
            v = p[i]
            if v is not None:
                out[key] = v if out[key] is None else pick(out[key], v)
        d = out.get(p[0] or "")
        if not isinstance(d, dict):
            return
        leg = [p[P_START], p[P_END], p[1], max(0, p[2])]
        if p[P_SSRC] is None or not isinstance(leg[0], int) or not isinstance(leg[1], int):
            d["packets"] += leg[2]    # no SSRC or times to tell a relay's legs by: a path of its own
            d["lost"] += leg[3]
            return
        paths = self.paths.setdefault((p[0], p[P_SSRC]), [])
        joined = [q for q in paths if q[0] <= leg[1] and leg[0] <= q[1]]
        for q in joined:              # the paths this leg overlaps become one, their best leg standing
            paths.remove(q)
            d["packets"] -= q[2]
            d["lost"] -= q[3]
        best = max([leg, *joined], key=lambda q: (q[3], -q[2]))
        paths.append([min(q[0] for q in [leg, *joined]), max(q[1] for q in [leg, *joined]), best[2], best[3]])
        d["packets"] += best[2]
        d["lost"] += best[3]


def call_media_summary(records: Iterable[dict]) -> dict:
    """``{"streams", "worst_mos", "worst_r_factor", "max_jitter_ms", "max_rtt_ms",
    "to_caller": {packets, lost}, "to_callee": {...}}``; interim records are ignored."""
    cm = CallMedia()
    for r in records:
        cm.add(r)
    return cm.section
