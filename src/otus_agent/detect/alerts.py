"""The ``type: "alert"`` record and the cooldown that keeps one attack from raising a storm of them."""
from __future__ import annotations

from typing import Any, Callable

SCHEMA_VERSION = 1
NS = 1_000_000_000


class AlertOut:
    """Emits alerts to ``sink``; a (detector, key) pair alerts at most once per ``cooldown_s``.
    The cooldown table is bounded by ``max_keys`` (oldest forgotten)."""

    def __init__(self, sink: Callable[[dict], Any] | None, cooldown_s: float, max_keys: int):
        self.sink = sink
        self.cooldown_ns = int(cooldown_s * NS)
        self.max_keys = max_keys
        self._last: dict[tuple, int] = {}
        self.alerts: dict[str, int] = {}
        self.suppressed = 0

    def raise_(self, detector: str, key: tuple, t_ns: int, severity: str, summary: str, **fields: Any) -> bool:
        k = (detector,) + key
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
