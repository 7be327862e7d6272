"""DnsStage (parser ``dns``): DNS over UDP and TCP from L4 datagrams, one ``type: "dns"`` record per message.

Queries and responses are matched by id and the reversed five-tuple to give ``latency_ms``; the table of
queries awaiting an answer is bounded (``max_pending``: the oldest is dropped, ``pending_evicted``) and
queries unanswered after ``query_timeout_s`` are counted ``unanswered``. A/AAAA answers at the end of the
CNAME chain feed the address -> domain cache that ``traffic`` (per-domain bytes) reads. Malformed
messages are counted by reason (``malformed``) and recorded with an ``error`` field, never raised.
"""
from __future__ import annotations

import ipaddress
from array import array
from typing import Any, Callable

from otus_agent.capture.pcapfile import PacketBatch
from otus_agent.dns.cache import AddressCache
from otus_agent.dns.config import DnsConfig
from otus_agent.dns.message import RCODE_NAMES, TYPE_NAMES, Answer, DnsError, DnsMessage, parse
from otus_agent.dns.traffic import DomainTraffic
from otus_agent.reassembly.datagrams import Datagram
from otus_agent.reassembly.tcpstream import TcpReassembler

SCHEMA_VERSION = 1
MAX_TCP_MESSAGES = 64  # per segment: a bound on the framing loop


def _rrs(rrs: list[Answer]) -> list[dict]:
    return [{"name": a.name, "type": TYPE_NAMES.get(a.rtype, str(a.rtype)), "ttl": a.ttl, "data": a.data} for a in rrs]


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


class DnsStage:
    def __init__(self, config: DnsConfig | None = None, sink: Callable[[dict], Any] | None = None):
        c = self.config = config or DnsConfig()
        self.sink = sink
        self.cache = AddressCache(c.cache_entries, c.ttl_floor_s, c.ttl_cap_s)
        self.traffic = DomainTraffic(self.cache, c.ignore, c.top_domains, c.max_tracked_domains)
        self.tcp = TcpReassembler(c.tcp_max_streams, 1 << 17, timeout_s=60.0)
        self.pending: dict[tuple, tuple[int, str | None]] = {}
        self._timeout_ns = int(c.query_timeout_s * 1e9)
        self._ignored_domains = c.ignore.domains
        self.queries = 0
        self.responses = 0
        self.matched = 0
        self.unanswered = 0
        self.pending_evicted = 0
        self.ignored = 0
        self.rcodes: dict[str, int] = {}
        self.malformed: dict[str, int] = {}

    # -- input ---------------------------------------------------------------------------------
    def feed(self, d: Datagram) -> None:
        """Take one L4 datagram (the DatagramStage sink); others than DNS ports are ignored."""
        ports = self.config.ports
        if d.src_port not in ports and d.dst_port not in ports:
            return
        if d.proto == 17:
            self._message(d.payload, d, "udp")
        elif d.proto == 6:
            self._tcp(d)

    def feed_batch(self, batch: PacketBatch, rows: array) -> None:
        """Per-domain traffic of a decoded batch (every IP packet, not only DNS)."""
        self.traffic.feed_batch(batch, rows)

    def _tcp(self, d: Datagram) -> None:
        key = (d.src_ip, d.src_port, d.dst_ip, d.dst_port)
        tcp = self.tcp
        tcp.expire(d.ts_ns)
        s = tcp.get(key)
        if s is None:
            if not d.payload and not d.tcp_flags & 0x02:
                return
            s = tcp.open(key, d.tcp_seq, d.ts_ns)
        if tcp.add(s, d.tcp_seq, d.tcp_flags, d.payload, d.ts_ns):
            buf = s.buf
            for _ in range(MAX_TCP_MESSAGES):  # RFC 1035 4.2.2: two-octet length, then the message
                if len(buf) < 2:
                    break
                n = (buf[0] << 8) | buf[1]
                if len(buf) < 2 + n:
                    break
                msg = bytes(buf[2:2 + n])
                del buf[:2 + n]
                self._message(msg, d, "tcp")
        if s.closed:
            tcp.close(key)

    # -- messages ------------------------------------------------------------------------------
    def _base(self, d: Datagram, transport: str) -> dict:
        return {"v": SCHEMA_VERSION, "type": "dns", "ts": d.ts_ns, "src_ip": d.src_ip, "src_port": d.src_port,
                "dst_ip": d.dst_ip, "dst_port": d.dst_port, "transport": transport}

    def _ignored(self, name: str | None) -> bool:
        if not name or not self._ignored_domains:
            return False
        n = name.lower().rstrip(".")
        return any(n == dom or n.endswith("." + dom) for dom in self._ignored_domains)

    def _message(self, payload: bytes, d: Datagram, transport: str) -> None:
        try:
            m = parse(payload)
        except DnsError as e:
            self.malformed[e.reason] = self.malformed.get(e.reason, 0) + 1
            if self.sink is not None:
                rec = self._base(d, transport)
                if len(payload) >= 4:
                    rec["id"] = (payload[0] << 8) | payload[1]
                    rec["response"] = bool(payload[2] & 0x80)
                rec["error"] = e.reason
                self.sink(rec)
            return
        if self._ignored(m.qname):
            self.ignored += 1
            return
        self._expire(d.ts_ns)
        latency = None
        if m.response:
            self.responses += 1
            rc = RCODE_NAMES.get(m.rcode, str(m.rcode))
            self.rcodes[rc] = self.rcodes.get(rc, 0) + 1
            q = self.pending.pop((d.dst_ip, d.dst_port, d.src_ip, d.src_port, transport, m.id), None)
            if q is not None:
                self.matched += 1
                latency = (d.ts_ns - q[0]) / 1e6
        else:
            self.queries += 1
            pending = self.pending
            if len(pending) >= self.config.max_pending:
                del pending[next(iter(pending))]
                self.pending_evicted += 1
            pending[(d.src_ip, d.src_port, d.dst_ip, d.dst_port, transport, m.id)] = (d.ts_ns, m.qname)
        chain, addrs = m.resolved() if m.response else ([], [])
        if addrs and m.qname:
            domain = m.qname.lower().rstrip(".")
            self.traffic.accessed(domain)
            for a in addrs:
                self.cache.put(_packed(a.data), domain, a.ttl, d.ts_ns)  # type: ignore[arg-type]
        if self.sink is not None:
            self.sink(self._record(m, d, transport, chain, addrs, latency))

    def _record(self, m: DnsMessage, d: Datagram, transport: str, chain: list[str], addrs: list, latency) -> dict:
        q = m.questions[0] if m.questions else None
        rec = self._base(d, transport)
        rec.update({
            "id": m.id,
            "response": m.response,
            "opcode": m.opcode,
            "rcode": RCODE_NAMES.get(m.rcode, str(m.rcode)) if m.response else None,
            "truncated": bool(m.flags & 0x0200),
            "qname": q.name if q else None,
            "qtype": TYPE_NAMES.get(q.qtype, str(q.qtype)) if q else None,
            "answers": _rrs(m.answers),
            "authority": _rrs(m.authority_rrs),
            "additional": _rrs(m.additional_rrs),
            "cname_chain": chain,
            "addresses": [a.data for a in addrs],
            "latency_ms": latency,
        })
        return rec

    def _expire(self, now: int) -> None:
        p = self.pending
        limit = now - self._timeout_ns
        while p:
            k = next(iter(p))
            if p[k][0] >= limit:
                return
            del p[k]
            self.unanswered += 1

    def summary(self) -> dict:
        return {"queries": self.queries, "responses": self.responses, "matched": self.matched,
                "unanswered": self.unanswered, "pending": len(self.pending), "pending_limit": self.config.max_pending,
                "pending_evicted": self.pending_evicted, "ignored": self.ignored, "rcodes": dict(self.rcodes),
                "malformed": dict(self.malformed), "cache": self.cache.counters(),
                "domains_tracked": len(self.traffic.domains) - 1, "domains_overflowed": self.traffic.overflowed,
                "tcp": self.tcp.counters()}
