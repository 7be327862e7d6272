"""The address -> domain cache, fed by DNS answers; bounded, with TTLs held between a floor and a cap."""
from __future__ import annotations


class AddressCache:
    """Maps an address (packed bytes) to the domain whose answer carried it.

    An entry lives ``clamp(ttl, floor, cap)`` seconds of packet time. When ``max_entries`` are held,
    the oldest-written entry goes (``evictions``); a fresh answer rewrites its entry at the end."""

    def __init__(self, max_entries: int = 65536, ttl_floor_s: float = 30.0, ttl_cap_s: float = 86400.0):
        if max_entries < 1 or ttl_floor_s < 0 or ttl_cap_s <= 0:
            raise ValueError("cache: max_entries >= 1, ttl_floor_s >= 0, ttl_cap_s > 0")
        self.max_entries = max_entries
        self.floor_ns = int(ttl_floor_s * 1e9)
        self.cap_ns = int(ttl_cap_s * 1e9)
        self._d: dict[bytes, tuple[str, int]] = {}  # address -> (domain, expiry ns)
        self.evictions = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._d)

    def put(self, addr: bytes, domain: str, ttl_s: int, now_ns: int) -> None:
        life = min(max(ttl_s * 1_000_000_000, self.floor_ns), self.cap_ns)
        d = self._d
        if d.pop(addr, None) is None and len(d) >= self.max_entries:
            del d[next(iter(d))]
            self.evictions += 1
        d[addr] = (domain, now_ns + life)

    def get(self, addr: bytes, now_ns: int) -> str | None:
        e = self._d.get(addr)
        if e is None:
            return None
        if now_ns > e[1]:
            del self._d[addr]
            self.expired += 1
            return None
        return e[0]

    def counters(self) -> dict[str, int]:
        return {"entries": len(self._d), "limit": self.max_entries, "evictions": self.evictions,
                "expired": self.expired}
