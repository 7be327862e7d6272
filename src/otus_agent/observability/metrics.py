"""Prometheus metrics of the daemon, built at scrape time from each task's latest counters.

Besides SIP and the pipeline: the media counters (``summary["rtp"]``, MediaStage.counters()), the flow
table's and DNS's families (built by flows/metrics.py and dns/metrics.py from the summaries the task
processes send), and the task interfaces' kernel counters (ifstats.InterfaceCollector).  Families of
the same name from several tasks or sources are merged: one HELP/TYPE per name in the exposition.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, cast

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

STATUSES = ("starting", "running", "completed", "failed", "stopped")


class TaskCollector:
    def __init__(self, snapshot: Callable[[], list]):
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        pk = CounterMetricFamily("otus_capture_packets", "Packets captured (after the kernel filter)",
                                 labels=["task", "interface"])
        drops = CounterMetricFamily("otus_capture_drops", "Packets or messages dropped, by stage",
                                    labels=["task", "stage"])
        stage = CounterMetricFamily("otus_pipeline_packets", "Packets or messages through each stage",
                                    labels=["task", "stage"])
        status = GaugeMetricFamily("otus_task_status", "1 for the task's current status", labels=["task", "status"])
        frag = GaugeMetricFamily("otus_reassembly_active_fragments", "IP datagrams waiting for fragments",
                                 labels=["task"])
        frag_bytes = GaugeMetricFamily("otus_reassembly_bytes", "Fragment bytes held", labels=["task"])
        tcp = GaugeMetricFamily("otus_tcp_streams", "TCP streams followed", labels=["task"])
        calls = GaugeMetricFamily("otus_calls_active", "Calls in the dialog table", labels=["task"])
        req = CounterMetricFamily("otus_sip_requests", "SIP requests", labels=["task", "method"])
        resp = CounterMetricFamily("otus_sip_responses", "SIP responses", labels=["task", "status_class"])
        bad = CounterMetricFamily("otus_sip_malformed", "Malformed SIP messages by reason", labels=["task", "reason"])
        decode_drop = CounterMetricFamily("otus_decode_drops", "Packets dropped at decode, by reason",
                                          labels=["task", "reason"])
        latency = HistogramMetricFamily("otus_pipeline_latency_seconds",
                                        "Per batch: processing time (stage=batch) and capture to records written "
                                        "(stage=capture_to_record)", labels=["task", "stage"])
        spool = GaugeMetricFamily("otus_spool_bytes", "Records waiting in the Kafka spool", labels=["task"])
        spool_age = GaugeMetricFamily("otus_spool_oldest_age_seconds", "Age of the oldest spooled record",
                                      labels=["task"])
        spool_drop = CounterMetricFamily("otus_spool_dropped", "Records dropped because the spool was full",
                                         labels=["task"])
        delivered = CounterMetricFamily("otus_kafka_delivered", "Records Kafka confirmed", labels=["task"])
        evict = CounterMetricFamily("otus_table_evictions", "Entries evicted from bounded tables (limit reached)",
                                    labels=["task", "table"])
        unmatched = CounterMetricFamily("otus_sip_unmatched", "SIP messages dropped because no dialog of the "
                                        "task's sip.match selector holds them", labels=["task"])
        matched = CounterMetricFamily("otus_sip_matched_calls", "Dialogs the task's sip.match selector admitted",
                                      labels=["task"])
        extra: list[Metric] = []
        for spec, st, s in self.snapshot():
            t = spec.id
            for name in STATUSES:
                status.add_metric([t, name], 1.0 if st == name else 0.0)
            if not s:
                continue
            k = s.get("kernel", {})
            iface = ",".join(spec.interfaces)
            pk.add_metric([t, iface], k.get("kernel_packets", 0))
            sip = s.get("sip", {})
            r = s.get("reassembly", {})
            drops.add_metric([t, "kernel"], k.get("kernel_drops", 0))
            drops.add_metric([t, "decode"], sum(s.get("drops", {}).values()))
            drops.add_metric([t, "reassembly"], r.get("evictions", 0) + r.get("timeouts", 0) + r.get("oversize", 0)
                             + r.get("too_many_fragments", 0) + r.get("malformed", 0))
            drops.add_metric([t, "parse"], sip.get("malformed_messages", 0))
            stage.add_metric([t, "capture"], s.get("packets", 0))
            stage.add_metric([t, "decode"], s.get("l4_datagrams", 0))
            stage.add_metric([t, "parse"], sip.get("sip_messages", 0))
            frag.add_metric([t], r.get("in_flight", 0))
            frag_bytes.add_metric([t], r.get("bytes_in_flight", 0))
            tcp.add_metric([t], sip.get("tcp", {}).get("streams", 0))
            calls.add_metric([t], sip.get("calls", {}).get("active", 0))
            for m, n in sip.get("methods", {}).items():
                req.add_metric([t, m], n)
            for c, n in sip.get("status_classes", {}).items():
                resp.add_metric([t, c], n)
            for reason, n in sip.get("malformed", {}).items():
                bad.add_metric([t, reason], n)
            for reason, n in s.get("drops", {}).items():
                decode_drop.add_metric([t, reason], n)
            evict.add_metric([t, "reassembly"], r.get("evictions", 0))
            evict.add_metric([t, "tcp_streams"], sip.get("tcp", {}).get("evictions", 0))
            evict.add_metric([t, "calls"], sip.get("calls", {}).get("evictions", 0))
            sel = sip.get("select")
            if isinstance(sel, dict):
                unmatched.add_metric([t], sel.get("unmatched", 0))
                matched.add_metric([t], sel.get("matched_dialogs", 0))
                evict.add_metric([t, "selector"], sel.get("evictions", 0))
            rep = s.get("report", {})
            if "spool_bytes" in rep:
                spool.add_metric([t], rep["spool_bytes"])
                spool_age.add_metric([t], rep.get("spool_oldest_age_s", 0.0))
                spool_drop.add_metric([t], rep.get("spool_dropped", 0))
                delivered.add_metric([t], rep.get("kafka_delivered", 0))
                drops.add_metric([t, "report"], rep.get("spool_dropped", 0))
            for stage_name, h in s.get("latency", {}).items():
                acc = 0
                buckets = []
                for le, n in h.get("buckets", {}).items():
                    acc += n
                    buckets.append((le, acc))
                if buckets:
                    latency.add_metric([t, stage_name], buckets, h.get("sum", 0.0))
            extra += media_metrics(t, s["rtp"]) if isinstance(s.get("rtp"), dict) else []
            extra += relay_metrics(t, s["relay"]) if isinstance(s.get("relay"), dict) else []
            extra += _stage_metrics(t, s)
        return _merge([pk, drops, stage, status, frag, frag_bytes, tcp, calls, req, resp, bad, decode_drop, latency,
                       spool, spool_age, spool_drop, delivered, evict, unmatched, matched, *extra])


def _merge(families: list[Metric]) -> list[Metric]:
    """One family per name: samples of later families of the same name join the first."""
    out: dict[str, Metric] = {}
    for f in families:
        if f.name in out:
            out[f.name].samples.extend(f.samples)
        else:
            out[f.name] = f
    return list(out.values())


JITTER_HELP = "Streams by mean jitter (ms), at their final record"


def media_metrics(task: str, c: dict) -> list[Metric]:
    """The media stage's counters (MediaStage.counters(): histograms already cumulative)."""
    active = GaugeMetricFamily("otus_media_streams_active", "RTP streams followed", labels=["task"])
    active.add_metric([task], c.get("streams_active", 0))
    started = CounterMetricFamily("otus_media_streams", "RTP streams started", labels=["task"])
    started.add_metric([task], c.get("streams_started", 0))
    pkts = CounterMetricFamily("otus_media_rtp_packets", "RTP packets measured", labels=["task"])
    pkts.add_metric([task], c.get("rtp_packets", 0))
    slow = CounterMetricFamily("otus_media_slow_path_datagrams", "Datagrams off the per-stream fast path",
                               labels=["task"])
    slow.add_metric([task], c.get("slow_path_datagrams", 0))
    loss = GaugeMetricFamily("otus_media_loss_ratio", "RTP packets lost / expected, over ended streams", labels=["task"])
    expected = c.get("expected_total", 0)   # from the totals, not loss_ratio: fanout workers' summaries add up
    loss.add_metric([task], c.get("lost_total", 0) / expected if expected else 0.0)
    bad = CounterMetricFamily("otus_media_bad_packets", "RTP/RTCP refused, by reason", labels=["task", "reason"])
    for k, v in c.items():
        if k.startswith("bad_"):
            bad.add_metric([task, k[4:]], v)
    evict = CounterMetricFamily("otus_table_evictions", "Entries evicted from bounded tables (limit reached)",
                                labels=["task", "table"])
    evict.add_metric([task, "media_streams"], c.get("streams_evicted", 0))
    evict.add_metric([task, "media_unannounced"], c.get("discovery_unannounced_evicted", 0))
    # fanout workers (engine/live.Relay, media/discovery.Unannounced): RTP that reached a worker before the
    # SDP another worker saw is held, then adopted, or lost by one of the table's bounds
    held = CounterMetricFamily("otus_media_unannounced_packets",
                               "RTP/RTCP held for an announcement from another worker, by outcome",
                               labels=["task", "outcome"])
    for outcome in ("held", "adopted", "before_sdp", "expired", "evicted", "overflow"):
        held.add_metric([task, outcome], c.get(f"discovery_unannounced_{outcome}", 0))
    shared = CounterMetricFamily("otus_media_shared_items",
                                 "Announcements, call ends and RTCP shared with other fanout workers, by kind",
                                 labels=["task", "kind"])
    for kind in ("taken", "applied_sides", "applied_ends", "applied_reuses", "rtcp_forwarded", "rtcp_applied",
                 "rtcp_not_here", "dumped", "bad_items", "outbox_dropped"):
        shared.add_metric([task, kind], c.get(f"discovery_share_{kind}", 0))
    reused = CounterMetricFamily("otus_media_call_id_reused",
                                 "Calls whose streams ended at a new INVITE with their Call-ID, inside the BYE's linger",
                                 labels=["task"])
    reused.add_metric([task], c.get("call_id_reused", 0))
    fams: list[Metric] = [active, started, pkts, slow, loss, bad, evict, held, shared, reused]
    for key, name, help_ in (("jitter_ms_hist", "otus_media_jitter_ms", JITTER_HELP),
                             ("mos_hist", "otus_media_mos", "Streams by MOS, at their final record")):
        h = c.get(key)
        if isinstance(h, dict) and h:
            fam = HistogramMetricFamily(name, help_, labels=["task"])
            fam.add_metric([task], list(h.items()), 0.0)   # the stage keeps no sum: 0 (counts and le are exact)
            fams.append(fam)
    return fams


def relay_metrics(task: str, r: dict) -> list[Metric]:
    """The fanout workers' sharing mesh (engine/live.Relay, summed over the workers): datagrams by
    outcome, and what waits for room in a peer's socket (bounded: RELAY_BACKLOG per peer, oldest dropped)."""
    dgrams = CounterMetricFamily("otus_fanout_relay_datagrams",
                                 "Datagrams between fanout workers (what parsers share), by outcome",
                                 labels=["task", "outcome"])
    for outcome in ("sent", "received", "dropped", "peer_full", "bad"):
        dgrams.add_metric([task, outcome], r.get(outcome, 0))
    backlog = GaugeMetricFamily("otus_fanout_relay_backlog", "Datagrams waiting for room in a peer worker's socket",
                                labels=["task"])
    backlog.add_metric([task], r.get("backlog", 0))
    return [dgrams, backlog]


class _SummaryView:
    """The summary a task process sent, shaped like the stage the families are built from (duck-typed:
    flows/metrics.py and dns/metrics.py read ``summary()``, ``icmp_types`` and ``traffic.top()``)."""

    def __init__(self, s: dict):
        self._s = s
        self.icmp_types = {}
        for text, n in s.get("icmp", {}).get("types", {}).items():   # "v4 8/0"
            v, _, tc = text.partition(" ")
            t, _, code = tc.partition("/")
            self.icmp_types[(int(v[1:]), int(t), int(code))] = n
        self.traffic = self
        keys = ("sent", "received", "connections", "accessed")   # engine/parsers.py DOMAIN_TRAFFIC
        self._top = {d: tuple(v.get(k, 0) for k in keys) for d, v in s.get("top", {}).items()}

    def summary(self) -> dict:
        return self._s

    def top(self) -> dict:
        return self._top


def _stage_metrics(task: str, s: dict) -> list[Metric]:
    out: list[Metric] = []
    if isinstance(s.get("flow"), dict):
        from otus_agent.flows.metrics import flow_metrics
        out += flow_metrics(task, cast(Any, _SummaryView(s["flow"])))
    if isinstance(s.get("dns"), dict):
        from otus_agent.dns.metrics import domain_metrics
        out += domain_metrics(task, cast(Any, _SummaryView(s["dns"])))
    if isinstance(s.get("detect"), dict):
        out += _detect_metrics(task, s["detect"])
    return out


def _detect_metrics(task: str, d: dict) -> list[Metric]:
    """The detectors' alerts by detector (bounded: the detectors are a fixed set), those the cooldown held
    back, and the keys their windows evicted."""
    alerts = CounterMetricFamily("otus_alerts", "Alert records raised, by detector", labels=["task", "detector"])
    held = CounterMetricFamily("otus_alerts_suppressed", "Alerts held back by the detectors' cooldown (the "
                               "attack went on)", labels=["task"])
    evicted = CounterMetricFamily("otus_detect_evictions", "Keys the detectors' bounded windows evicted",
                                  labels=["task"])
    n_held = n_evicted = 0
    for part in d.values():       # "sip" and "network"
        if not isinstance(part, dict):
            continue
        for detector, n in (part.get("alerts") or {}).items():
            alerts.add_metric([task, str(detector)], n)
        n_held += int(part.get("suppressed", 0))
        n_evicted += int(part.get("evictions", 0))
    held.add_metric([task], n_held)
    evicted.add_metric([task], n_evicted)
    return [alerts, held, evicted]


class TaskInterfaces:
    """The kernel counters of the interfaces the tasks capture on (all of them when one uses 'any')."""

    def __init__(self, snapshot: Callable[[], list]):
        from otus_agent.observability.ifstats import InterfaceStats
        self.snapshot = snapshot
        self.stats = InterfaceStats([])     # one reader: rates are kept between scrapes

    def collect(self) -> Iterable[Metric]:
        names: set[str] = set()
        for spec, _, _ in self.snapshot():
            names.update(spec.interfaces)
        self.stats.names = None if "any" in names else sorted(names)
        return self.stats.metrics() if names else []


def serve(address: tuple[str, int], snapshot: Callable[[], list], collectors: Iterable[Any] = ()):
    """``collectors``: more of this process's own (``otus agent``'s identity table)."""
    registry = CollectorRegistry()
    registry.register(TaskCollector(snapshot))
    registry.register(TaskInterfaces(snapshot))
    for c in collectors:
        registry.register(c)
    server, thread = start_http_server(address[1], addr=address[0], registry=registry)
    return server
