"""Bounded sliding-window counters keyed by source, destination or user (1-second buckets)."""
from __future__ import annotations

from collections import deque

NS = 1_000_000_000


class Counts:
    """Per key, counts of several kinds over the last ``window_s`` seconds of packet time.

    At most ``max_keys`` keys; when full the least recently touched goes (``evictions``)."""

    def __init__(self, window_s: float, kinds: int = 1, max_keys: int = 16384):
        self.window = max(1, int(round(window_s)))
        self.kinds = kinds
        self.max_keys = max_keys
        self._d: dict[object, deque] = {}
        self.evictions = 0

    def add(self, key: object, t_ns: int, kind: int = 0, n: int = 1) -> list[int]:
        """Count ``n`` of ``kind`` at ``t_ns``; return the totals per kind over the window."""
        sec = t_ns // NS
        q = self._d.pop(key, None)
        if q is None:
            if len(self._d) >= self.max_keys:
                del self._d[next(iter(self._d))]
                self.evictions += 1
            q = deque()
        self._d[key] = q
        while q and q[0][0] <= sec - self.window:
            q.popleft()
        if not q or q[-1][0] != sec:
            q.append([sec] + [0] * self.kinds)
        q[-1][1 + kind] += n
        return [sum(b[1 + k] for b in q) for k in range(self.kinds)]


class Distinct:
    """Per key, the distinct items seen over the last ``window_s`` seconds; at most ``cap`` items are
    kept per key (enough to reach any threshold below it) and ``max_keys`` keys (oldest evicted)."""

    def __init__(self, window_s: float, cap: int, max_keys: int = 16384):
        self.window_ns = int(window_s * NS)
        self.cap = cap
        self.max_keys = max_keys
        self._d: dict[object, dict] = {}
        self.evictions = 0

    def add(self, key: object, item: object, t_ns: int) -> int:
        items = self._d.pop(key, None)
        if items is None:
            if len(self._d) >= self.max_keys:
                del self._d[next(iter(self._d))]
                self.evictions += 1
            items = {}
        self._d[key] = items
        items.pop(item, None)
        items[item] = t_ns
        limit = t_ns - self.window_ns
        while items and next(iter(items.values())) < limit:
            del items[next(iter(items))]
        while len(items) > self.cap:
            del items[next(iter(items))]
        return len(items)

    def forget(self, key: object) -> None:
        self._d.pop(key, None)
