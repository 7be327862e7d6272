"""FlowStage: the flow table fed straight from the decoded batch (parser ``flow``).

It walks the rows of ``decode/layout.pxd`` (no Datagram objects), so it can follow every packet
of a capture. Bytes are frame (wire) lengths, as tshark's conversation statistics count them.
Timeouts and interval reports run on packet time, checked at most every ``sweep_interval_s``;
``tick(now_ns)`` drives them when no packets arrive. A sweep does not walk the table: two timing
wheels (``Wheel`` in flows/walk_cy.py) file every flow by the packet time it may time out and be
reported at, when it is created and again only when a sweep finds it not due yet (or its deadline
moved earlier: a shorter timeout for its new TCP state, or packet time going back), so a sweep touches
only the flows that may be due. Each wheel holds at most twice ``max_flows`` entries. The per-packet
walk, new and ended flows and the sweep are compiled (walk_cy.py); ICMP, fragments and the views are
here. Otus only observes: nothing is dropped.

Outputs: ``sink(record)`` gets the ``type: "flow"`` records (interval and end);
``events(record)`` (optional, for the detectors) also gets ``start`` and ``established``
records, and one ``type: "icmp"`` event per ICMP packet.
"""
from __future__ import annotations

from array import array
from collections import deque
from typing import Any, Callable, Iterable

from otus_agent.capture.linktypes import RAW as LINKTYPE_RAW
from otus_agent.capture.pcapfile import PacketBatch
from otus_agent.decode import decoder as D
from otus_agent.flows.config import FlowConfig
from otus_agent.flows.records import address
from otus_agent.flows.table import CLOSED, NONE, RESET, STATE_NAMES, SYN_RECEIVED, SYN_SENT
from otus_agent.flows.walk_cy import Flow, Wheel, end_flow, flow_record, idle_limit, new_flow, sweep, timeout_reason, walk
from otus_agent.reassembly.ipfrag_cy import FragmentReassembler

NF = D.NF
F_STATUS, F_IPVER, F_L3OFF, F_L3END, F_PROTO, F_L4OFF = D.F_STATUS, D.F_IPVER, D.F_L3OFF, D.F_L3END, D.F_PROTO, \
    D.F_L4OFF
F_PAYLEN, F_SPORT, F_DPORT, F_TCPFLAGS, F_TCPSEQ = D.F_PAYLEN, D.F_SPORT, D.F_DPORT, D.F_TCPFLAGS, D.F_TCPSEQ
ST_L4, ST_OTHER_IP, ST_FRAGMENT, ST_DROPPED = D.ST_L4, D.ST_OTHER_IP, D.ST_FRAGMENT, D.ST_DROPPED

ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))  # unreachable, source quench, redirect, time exceeded, parameter
ICMP6_ERRORS = frozenset((1, 2, 3, 4))  # unreachable, packet too big, time exceeded, parameter problem
ICMP4_ECHO = frozenset((0, 8))
ICMP6_ECHO = frozenset((128, 129))
PORTED = frozenset((6, 17, 132))
ICMP_RECENT = 100   # ICMP errors kept for the API (a ring: the oldest goes)

Sink = Callable[[dict], Any]


class FlowStage:
    """Connection tracking over TCP, UDP, SCTP, ICMP/ICMPv6 (and other IP protocols by address pair)."""

    def __init__(self, config: FlowConfig | None = None, sink: Sink | None = None, events: Sink | None = None,
                 batch_size: int = 4096):
        c = self.config = config or FlowConfig()
        self.sink = sink
        self.events = events
        self.flows: dict[tuple, Flow] = {}
        def ns(seconds: float) -> int:  # at most 2**62 ns (146 years): the compiled walk's clock is int64
            return min(int(seconds * 1_000_000_000), 1 << 62)
        self._t_syn = ns(c.tcp_syn_timeout_s)
        self._t_est = ns(c.tcp_established_timeout_s)
        self._t_closed = ns(c.tcp_closed_timeout_s)
        self._t_udp = ns(c.udp_timeout_s)
        self._t_icmp = ns(c.icmp_timeout_s)
        self._tcp_lim = tuple(self._tcp_timeout(st) for st in range(len(STATE_NAMES)))  # by state, for walk_cy
        self._t_min = min(self._t_syn, self._t_est, self._t_closed, self._t_udp, self._t_icmp)
        self._report_ns = ns(c.report_interval_s)
        self._max_flows = c.max_flows
        self._sweep_ns = ns(c.sweep_interval_s)
        self._next_sweep = -1
        # who may be due at a sweep: wheels of sweep-interval buckets, each at most twice the table (walk_cy)
        self._xw = Wheel(self._sweep_ns, 2 * c.max_flows, False)   # idle timeouts: deadline last_ns + timeout
        self._rw = Wheel(self._sweep_ns, 2 * c.max_flows, True)    # interval reports: reported_ns + interval
        self._decoder: D.Decoder | None = None
        # fragments: the same reassembler as the datagram stage, with its own bounds and counters
        self.reasm = FragmentReassembler() if c.reassemble_fragments else None
        self._inner = D.Decoder(1, verify_ipv4_checksum=False)
        self._one = tuple(array("q", [0]) for _ in range(5))
        self._batch_size = batch_size
        self.now_ns = 0
        # counters (summary() names them)
        self.packets = 0
        self.bytes = 0
        self.created = 0
        self.ended: dict[str, int] = {}
        self.evictions = 0
        self.fragments = 0
        self.undecoded = 0
        self.icmp_types: dict[tuple[int, int, int], int] = {}  # (ipver, type, code) -> packets
        self.icmp_errors_joined = 0
        self.icmp_errors_unmatched = 0
        self.icmp_truncated = 0  # ICMP header or quoted header too short to read
        # the last ICMP errors: (ts, reporter, type, code, ipver, proto, src, dst, sport, dport, joined)
        self.icmp_recent: deque[tuple] = deque(maxlen=ICMP_RECENT)
        self.view = None
        if c.view_dir is not None:   # the daemon's window on this table (flows/view.py)
            from otus_agent.flows.view import ViewServer
            self.view = ViewServer.open(c.view_dir, self)

    # -- input ---------------------------------------------------------------------------------
    def feed_batch(self, batch: PacketBatch, rows: array | None = None) -> None:
        """Account every packet of ``batch``; ``rows`` is its decoded batch (decoded here if None)."""
        n = batch.n
        if rows is None:
            if self._decoder is None:
                self._decoder = D.Decoder(max(self._batch_size, n), verify_ipv4_checksum=False)
            rows = self._decoder.decode(batch.buf, n, batch.offs, batch.caplens, batch.links)
        walk(self, batch.buf, rows, n, batch.ts_ns, batch.wirelens)
        if n:
            self.now_ns = max(self.now_ns, batch.ts_ns[n - 1])

    def _fragment(self, buf: bytes, rows: array, o: int, t: int, length: int) -> None:
        """An IP fragment: counted; the datagram it completes is accounted once, with this frame's length."""
        self.fragments += 1
        if self.reasm is None:
            return
        whole = self.reasm.add(buf, rows[o + D.F_L3OFF], rows[o + D.F_L3END], rows[o + F_IPVER], rows[o + D.F_FRAGHDR],
                               t)
        if whole is None:
            return
        offs, caps, wls, tss, links = self._one
        caps[0], wls[0], tss[0], links[0] = len(whole), length, t, LINKTYPE_RAW
        out = self._inner.decode_one(whole)
        if out[F_STATUS] == ST_FRAGMENT:  # fragments inside the fragment: not followed further
            return
        walk(self, whole, array("q", out), 1, tss, wls)

    def _event(self, f: Flow, event: str, t: int) -> None:
        if self.events is not None:
            self.events(flow_record(f, event, t))

    def run(self, batches: Iterable[PacketBatch]) -> None:
        for b in batches:
            self.feed_batch(b)

    def _other(self, buf: bytes, rows: array, o: int, t: int, length: int) -> None:
        """A packet with an L4 other than TCP/UDP/SCTP: ICMP by type, anything else by address pair."""
        if t >= self._next_sweep:
            self._sweep(t)
        ipver = rows[o + F_IPVER]
        l3 = rows[o + F_L3OFF]
        if ipver == 4:
            src, dst = buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]
        else:
            src, dst = buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40]
        proto = rows[o + F_PROTO]
        typ = code = -1
        ident = 0
        if proto == 1 or proto == 58:
            l4, end = rows[o + F_L4OFF], rows[o + F_L3END]
            if end - l4 < 4:
                self.icmp_truncated += 1
            else:
                typ, code = buf[l4], buf[l4 + 1]
                tk = (ipver, typ, code)
                self.icmp_types[tk] = self.icmp_types.get(tk, 0) + 1
                if (typ in ICMP4_ECHO if proto == 1 else typ in ICMP6_ECHO) and end - l4 >= 8:
                    ident = (buf[l4 + 4] << 8) | buf[l4 + 5]
                if typ in (ICMP4_ERRORS if proto == 1 else ICMP6_ERRORS):
                    self._join(buf, l4 + 8, end, typ, code, ipver, t, src)
        k = (src, dst, ident, ident, proto)
        f = self.flows.get(k)
        d = 0
        if f is None:
            f = self.flows.get((dst, src, ident, ident, proto))
            d = 1
        if f is not None and t - f.last_ns > self._t_min and self._expired(f, t):
            self._end(f, t, "idle_timeout")
            f = None
        if f is None:
            f = self._new(k, ipver, proto, src, dst, ident, ident, t)
            d = 0
        if d == 0:
            f.pk_ab += 1
            f.by_ab += length
        else:
            f.pk_ba += 1
            f.by_ba += length
        if typ >= 0:
            if f.icmp is None:
                f.icmp = {}
            f.icmp[(typ, code)] = f.icmp.get((typ, code), 0) + 1
            if self.events is not None:
                self.events({"type": "icmp", "ts": t, "ipver": ipver, "src_ip": address(src), "dst_ip": address(dst),
                             "icmp_type": typ, "icmp_code": code, "bytes": length})
        back = t < f.last_ns
        f.last_ns = t
        if back:   # packet time went back: so did the flow's deadline
            self._xw.refile(f, t + self._limit(f), self.flows)
        self.packets += 1
        self.bytes += length
        self.now_ns = max(self.now_ns, t)

    def _join(self, buf: bytes, q: int, end: int, typ: int, code: int, ipver: int, t: int = 0,
              reporter: bytes = b"") -> None:
        """Count an ICMP error on the flow of the packet it quotes (RFC 792 / RFC 4443); the last
        ``ICMP_RECENT`` errors that quote a whole header are kept for ``/api/v1/icmp`` (flows/view.py)."""
        if ipver == 4:
            if end - q < 20 or buf[q] >> 4 != 4:
                self.icmp_truncated += 1
                return
            ihl = (buf[q] & 15) * 4
            proto = buf[q + 9]
            src, dst = buf[q + 12:q + 16], buf[q + 16:q + 20]
            p = q + ihl
        else:
            if end - q < 40 or buf[q] >> 4 != 6:
                self.icmp_truncated += 1
                return
            proto = buf[q + 6]
            src, dst = buf[q + 8:q + 24], buf[q + 24:q + 40]
            p = q + 40
        if proto in PORTED:
            if end - p < 4:
                self.icmp_truncated += 1
                return
            sp, dp = (buf[p] << 8) | buf[p + 1], (buf[p + 2] << 8) | buf[p + 3]
        elif proto == 1 or proto == 58:
            if end - p < 8:
                self.icmp_truncated += 1
                return
            sp = dp = (buf[p + 4] << 8) | buf[p + 5] if buf[p] in (ICMP4_ECHO if proto == 1 else ICMP6_ECHO) else 0
        else:
            sp = dp = 0
        f = self.flows.get((src, dst, sp, dp, proto)) or self.flows.get((dst, src, dp, sp, proto))
        self.icmp_recent.append((t, reporter, typ, code, ipver, proto, src, dst, sp, dp, f is not None))
        if f is None:
            self.icmp_errors_unmatched += 1
            return
        self.icmp_errors_joined += 1
        if f.icmp_errors is None:
            f.icmp_errors = {}
        f.icmp_errors[(typ, code)] = f.icmp_errors.get((typ, code), 0) + 1

    # -- table ---------------------------------------------------------------------------------
    def _new(self, key: tuple, ipver: int, proto: int, src: bytes, dst: bytes, sp: int, dp: int, t: int) -> Flow:
        return new_flow(self, self.flows, key, ipver, proto, src, dst, sp, dp, t)  # type: ignore[no-any-return]

    def _tcp_timeout(self, st: int) -> int:
        """The idle timeout of a TCP flow in state ``st`` (``_tcp_lim`` holds it for every state)."""
        if st == CLOSED or st == RESET:
            return self._t_closed
        if st == SYN_SENT or st == SYN_RECEIVED or st == NONE:
            return self._t_syn
        return self._t_est

    def _limit(self, f: Flow) -> int:
        return idle_limit(self, f.proto, f.state)  # type: ignore[no-any-return]

    @staticmethod
    def _timeout_reason(f: Flow) -> str:
        return timeout_reason(f)  # type: ignore[no-any-return]

    def _expired(self, f: Flow, t: int) -> bool:
        return t - f.last_ns > self._limit(f)

    def _end(self, f: Flow, t: int, reason: str) -> None:
        end_flow(self, f, t, reason)

    def _sweep(self, t: int) -> None:
        """Timeouts and interval reports at ``t`` (walk_cy.sweep: the wheels' due flows only)."""
        sweep(self, t)

    def tick(self, now_ns: int) -> None:
        """Run timeouts and interval reports at ``now_ns`` (packet clock) when traffic is quiet."""
        self.now_ns = max(self.now_ns, now_ns)
        self._sweep(now_ns)

    def flush(self, reason: str = "shutdown") -> None:
        """End every flow (capture over); each gets an end record."""
        if self.view is not None:
            self.view.close()
            self.view = None
        for f in list(self.flows.values()):
            self._end(f, self.now_ns, reason)
        self._xw.clear()
        self._rw.clear()

    # -- views (for /api/v1/connections, /api/v1/icmp, /api/v1/stats) -----------------------
    def connections(self, proto: str | None = None, ip: str | None = None, port: int | None = None,
                    state: str | None = None, limit: int = 1000) -> list[dict]:
        """Active flows as ``flow`` records (``event: "active"``), filtered; at most ``limit``."""
        out: list[dict] = []
        for f in self.flows.values():
            if port is not None and port not in (f.sport, f.dport):
                continue
            rec = flow_record(f, "active", self.now_ns)
            if proto is not None and rec["proto"] != proto:
                continue
            if ip is not None and ip not in (rec["src_ip"], rec["dst_ip"]):
                continue
            if state is not None and rec.get("tcp_state") != state:
                continue
            out.append(rec)
            if len(out) >= limit:
                break
        return out

    def icmp(self) -> dict:
        return {"types": {f"v{v} {t}/{c}": n for (v, t, c), n in sorted(self.icmp_types.items())},
                "errors_joined": self.icmp_errors_joined, "errors_unmatched": self.icmp_errors_unmatched,
                "truncated": self.icmp_truncated}

    def summary(self) -> dict:
        return {"active": len(self.flows), "limit": self.config.max_flows, "created": self.created,
                "ended": dict(self.ended), "evictions": self.evictions, "packets": self.packets, "bytes": self.bytes,
                "fragments": self.fragments, "undecoded": self.undecoded, "icmp": self.icmp(),
                "reassembly": self.reasm.counters() if self.reasm is not None else None,
                "wheels": {"expiry": self._xw.counters(), "report": self._rw.counters()},
                "view": self.view.counters() if self.view is not None else None}
