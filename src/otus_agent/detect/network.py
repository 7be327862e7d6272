"""Network detectors over the flow table's events (``FlowStage(events=...)``): port scans and host sweeps
(distinct ports or hosts per source in a window), SYN floods (SYNs without a completed handshake) and
ICMP floods (ICMP packets per destination)."""
from __future__ import annotations

from typing import Any, Callable

from otus_agent.detect.alerts import AlertOut
from otus_agent.detect.config import DetectConfig
from otus_agent.detect.windows import Counts, Distinct


class NetworkDetector:
    def __init__(self, config: DetectConfig | None = None, sink: Callable[[dict], Any] | None = None):
        c = self.config = config or DetectConfig()
        ps, sf, ic = c.port_scan, c.syn_flood, c.icmp_flood
        self.out = AlertOut(sink, c.cooldown_s, c.max_keys)
        self.ports = Distinct(ps.window_s, ps.distinct_ports, c.max_keys)
        self.hosts = Distinct(ps.window_s, ps.distinct_hosts, c.max_keys)
        self.syns = Counts(sf.window_s, 2, c.max_keys)
        self.icmp = Counts(ic.window_s, 1, c.max_keys)

    def observe(self, ev: dict) -> None:
        """Take one flow event (``start``/``established``/``end``/``interval`` record) or ``icmp`` event."""
        t = ev["ts"]
        if ev["type"] == "icmp":
            if ev["icmp_type"] in (0, 129):  # echo replies are the victim answering, not the flood
                return
            n = self.icmp.add(ev["dst_ip"], t)[0]
            c = self.config.icmp_flood
            if n >= c.packets:
                self.out.raise_("icmp_flood", (ev["dst_ip"],), t, "critical",
                                f"{n} ICMP packets to {ev['dst_ip']} in {c.window_s:g} s", dst_ip=ev["dst_ip"],
                                count=n, threshold=c.packets, window_s=c.window_s)
            return
        event, proto = ev.get("event"), ev.get("proto")
        if proto not in ("tcp", "udp", "sctp"):
            return
        if event == "start":
            self._scan(ev, t, proto)
            if proto == "tcp" and ev.get("tcp_flags_src") == "S":
                self._syn(ev["dst_ip"], ev["dst_port"], t, 0)
        elif event == "established":
            self._syn(ev["dst_ip"], ev["dst_port"], t, 1)

    def _scan(self, ev: dict, t: int, proto: str) -> None:
        c = self.config.port_scan
        src, dst, port = ev["src_ip"], ev["dst_ip"], ev["dst_port"]
        n = self.ports.add((src, dst, proto), port, t)
        if n >= c.distinct_ports:
            self.out.raise_("port_scan", (src, dst), t, "warning",
                            f"{src} probed {n} {proto} ports of {dst} in {c.window_s:g} s", src_ip=src, dst_ip=dst,
                            proto=proto, count=n, threshold=c.distinct_ports, window_s=c.window_s)
        m = self.hosts.add((src, port, proto), dst, t)
        if m >= c.distinct_hosts:
            self.out.raise_("host_sweep", (src, port, proto), t, "warning",
                            f"{src} probed {m} hosts on {proto}/{port} in {c.window_s:g} s", src_ip=src,
                            dst_port=port, proto=proto, count=m, threshold=c.distinct_hosts, window_s=c.window_s)

    def _syn(self, dst: str, port: int, t: int, kind: int) -> None:
        c = self.config.syn_flood
        syns, done = self.syns.add((dst, port), t, kind)
        incomplete = syns - done
        if kind == 0 and incomplete >= c.incomplete and incomplete >= c.ratio * syns:
            self.out.raise_("syn_flood", (dst, port), t, "critical",
                            f"{incomplete} of {syns} SYNs to {dst}:{port} incomplete in {c.window_s:g} s",
                            dst_ip=dst, dst_port=port, count=incomplete, syns=syns, threshold=c.incomplete,
                            window_s=c.window_s)

    def counters(self) -> dict:
        return {"alerts": dict(self.out.alerts), "suppressed": self.out.suppressed, "recent": self.out.recent_summary(),
                "evictions": self.ports.evictions + self.hosts.evictions + self.syns.evictions + self.icmp.evictions}
