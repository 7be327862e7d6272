"""A timing wheel of flows: who may be due at a sweep, without walking the whole table.

Flows are filed by a deadline (packet time, ns) into buckets ``width`` ns wide; a heap holds the
bucket numbers in use, so a sweep at ``t`` takes exactly the buckets that can hold a deadline before
``t``. An entry is a hint, never a verdict: the stage files a flow lazily (once, not per packet), and
when its bucket comes due it checks the flow's real deadline and ends it, reports it, or files it again.
The flow itself records the bucket of its live entry (``Flow.xq`` / ``Flow.rq``): an entry whose
bucket is not the flow's (filed again since, or the flow ended) is stale and skipped, so an entry can
never act on a later flow that reuses the key -- entries hold the flow object, not its key.

Bound: entries are at most ``limit`` (the stage gives twice its table limit). Stale entries of ended
flows wait for their bucket; when the wheel is full the stage rebuilds it from the table's live flows
(one entry each), which frees at least half of it. Nothing is dropped.
"""
from __future__ import annotations

from heapq import heappop, heappush
from typing import Any


class Wheel:
    """Buckets of flows by deadline; ``size`` counts entries, stale ones included."""
    __slots__ = ("width", "buckets", "heap", "size", "limit", "rebuilds")

    def __init__(self, width: int, limit: int):
        self.width = max(int(width), 1)
        self.buckets: dict[int, list[Any]] = {}
        self.heap: list[int] = []
        self.size = 0
        self.limit = limit
        self.rebuilds = 0

    def bucket(self, deadline: int) -> int:
        return deadline // self.width

    def add(self, f: Any, b: int) -> None:
        lst = self.buckets.get(b)
        if lst is None:
            self.buckets[b] = [f]
            heappush(self.heap, b)
        else:
            lst.append(f)
        self.size += 1

    def full(self) -> bool:
        return self.size >= self.limit

    def take(self, t: int) -> list[tuple[int, list[Any]]]:
        """Remove and return the buckets that can hold a deadline before ``t`` (bucket start < t)."""
        out = []
        heap, buckets, w = self.heap, self.buckets, self.width
        while heap and heap[0] * w < t:
            b = heappop(heap)
            lst = buckets.pop(b)
            self.size -= len(lst)
            out.append((b, lst))
        return out

    def clear(self) -> None:
        self.buckets.clear()
        self.heap.clear()
        self.size = 0

    def counters(self) -> dict:
        return {"entries": self.size, "limit": self.limit, "rebuilds": self.rebuilds}
