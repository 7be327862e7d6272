"""The ``type: "alert"`` record and the cooldown that keeps one attack from raising a storm of them."""
from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Callable

SCHEMA_VERSION = 1
NS = 1_000_000_000
RECENT_MAX = 64          # (detector, source) pairs in the recent summary; the least recently fired goes
SUMMARY_MAX = 200        # characters of an alert's text kept in that summary


class AlertOut:
    """Emits alerts to ``sink``; a (detector, key) pair alerts at most once per ``cooldown_s``.
    The cooldown table is bounded by ``max_keys`` (oldest forgotten).

    ``recent`` summarises what fired lately, for the agent's status entry (kube/status.py) and from it the
    Events on the CaptureTask: per (detector, source) the times it fired (raised or held back by the
    cooldown: the attack goes on) and when last, at most ``RECENT_MAX`` pairs."""

    def __init__(self, sink: Callable[[dict], Any] | None, cooldown_s: float, max_keys: int):
        self.sink = sink
        self.cooldown_ns = int(cooldown_s * NS)
        self.max_keys = max_keys
        self._last: dict[tuple, int] = {}
        self.alerts: dict[str, int] = {}
        self.suppressed = 0
        self.recent: OrderedDict[tuple[str, str], list] = OrderedDict()   # -> [times fired, last ns, text]

    def _fired(self, detector: str, key: tuple, t_ns: int, summary: str) -> None:
        k = (detector, "/".join(str(x) for x in key))
        e = self.recent.pop(k, None)
        if e is None:
            e = [0, 0, ""]
            if len(self.recent) >= RECENT_MAX:
                self.recent.popitem(last=False)
        e[0] += 1
        e[1] = max(e[1], t_ns)
        e[2] = summary[:SUMMARY_MAX]
        self.recent[k] = e

    def recent_summary(self) -> dict[str, dict]:
        """``{"<detector>|<source>": {"count", "last", "summary"}}``, ``last`` in RFC 3339 (a string: fanout
        workers' counters are summed, and a sum of times means nothing; merged, it is one worker's)."""
        return {f"{d}|{src}": {"count": n, "summary": text,
                               "last": datetime.fromtimestamp(t / NS, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                for (d, src), (n, t, text) in self.recent.items()}

    def raise_(self, detector: str, key: tuple, t_ns: int, severity: str, summary: str, **fields: Any) -> bool:
        k = (detector,) + key
        self._fired(detector, key, t_ns, summary)
        last = self._last.get(k)
        if last is not None and t_ns - last < self.cooldown_ns:
            self.suppressed += 1
            return False
        if last is None and len(self._last) >= self.max_keys:
            del self._last[next(iter(self._last))]
        self._last.pop(k, None)
        self._last[k] = t_ns
        self.alerts[detector] = self.alerts.get(detector, 0) + 1
        if self.sink is not None:
            rec = {"v": SCHEMA_VERSION, "type": "alert", "ts": t_ns, "detector": detector, "severity": severity,
                   "summary": summary}
            rec.update(fields)
            self.sink(rec)
        return True
