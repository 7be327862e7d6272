"""Per-domain traffic: packets to and from addresses a DNS answer named, walked from the decoded batch.

A packet whose destination the cache knows is *sent* to that domain, one whose source it knows is
*received* from it (the destination wins when both are known). ``connections`` counts TCP SYNs (without
ACK) sent to a domain's addresses; ``accessed`` counts DNS answers for it. Cardinality is bounded twice:
at most ``max_tracked`` domains are counted (traffic of any further domain counts as ``other``), and
``top()`` exports the ``top_n`` domains by bytes with the rest summed into ``other``.
"""
from __future__ import annotations

import ipaddress
from array import array

from otus_agent.capture.pcapfile import PacketBatch
from otus_agent.decode import decoder as D
from otus_agent.dns.cache import AddressCache
from otus_agent.dns.config import DnsIgnore

OTHER = "other"
SENT, RECEIVED, CONNECTIONS, ACCESSED = range(4)
_ADDR_MEMO_MAX = 4096


class DomainTraffic:
    def __init__(self, cache: AddressCache, ignore: DnsIgnore | None = None, top_n: int = 100,
                 max_tracked: int = 10000):
        self.cache = cache
        self.ignore = ignore or DnsIgnore()
        self.top_n = top_n
        self.max_tracked = max_tracked
        self.domains: dict[str, list[int]] = {OTHER: [0, 0, 0, 0]}
        self.overflowed = 0  # packets or answers counted as "other" because the table was full
        self._nets = [ipaddress.ip_network(a, strict=False) for a in self.ignore.addresses]
        self._ignored_addr: dict[bytes, bool] = {}

    def _row(self, domain: str) -> list[int]:
        r = self.domains.get(domain)
        if r is None:
            if len(self.domains) > self.max_tracked:
                self.overflowed += 1
                return self.domains[OTHER]
            r = self.domains[domain] = [0, 0, 0, 0]
        return r

    def accessed(self, domain: str) -> None:
        self._row(domain)[ACCESSED] += 1

    def _skip_addr(self, raw: bytes) -> bool:
        hit = self._ignored_addr.get(raw)
        if hit is None:
            a = ipaddress.ip_address(raw)
            hit = (self.ignore.localhost and a.is_loopback) or any(a in n for n in self._nets)
            if len(self._ignored_addr) >= _ADDR_MEMO_MAX:
                self._ignored_addr.clear()
            self._ignored_addr[raw] = hit
        return hit

    def feed_batch(self, batch: PacketBatch, rows: array) -> None:
        """Attribute each IP packet of ``batch`` (decoded in ``rows``) by frame length."""
        NF = D.NF
        cache_get = self.cache.get
        buf, ts, wl = batch.buf, batch.ts_ns, batch.wirelens
        ports = self.ignore.ports
        for i in range(batch.n):
            o = i * NF
            st = rows[o]
            if st != D.ST_L4 and st != D.ST_OTHER_IP:
                continue
            l3 = rows[o + D.F_L3OFF]
            if rows[o + D.F_IPVER] == 4:
                src, dst = buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]
            else:
                src, dst = buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40]
            t = ts[i]
            dom = cache_get(dst, t)
            col = SENT
            if dom is None:
                dom = cache_get(src, t)
                col = RECEIVED
                if dom is None:
                    continue
            if ports and st == D.ST_L4 and (rows[o + D.F_SPORT] in ports or rows[o + D.F_DPORT] in ports):
                continue
            if self._skip_addr(src) or self._skip_addr(dst):
                continue
            r = self._row(dom)
            r[col] += wl[i]
            if col == SENT and st == D.ST_L4 and rows[o + D.F_PROTO] == 6 and rows[o + D.F_TCPFLAGS] & 0x12 == 0x02:
                r[CONNECTIONS] += 1

    def top(self) -> dict[str, tuple[int, int, int, int]]:
        """``top_n`` domains by bytes, plus ``other`` holding everything else: (sent, received, conns, accessed)."""
        named = sorted(((d, r) for d, r in self.domains.items() if d != OTHER), key=lambda e: -(e[1][0] + e[1][1]))
        out = {d: (r[0], r[1], r[2], r[3]) for d, r in named[:self.top_n]}
        rest = [self.domains[OTHER]] + [r for _, r in named[self.top_n:]]
        out[OTHER] = tuple(sum(r[k] for r in rest) for k in range(4))  # type: ignore[assignment]
        return out
