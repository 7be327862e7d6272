"""Prometheus metrics of the daemon, built at scrape time from each task's latest counters."""
from __future__ import annotations

from typing import Callable, Iterable

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
        return [pk, drops, stage, status, frag, frag_bytes, tcp, calls, req, resp, bad, decode_drop, latency, spool,
                spool_age, spool_drop, delivered, evict]


def serve(address: tuple[str, int], snapshot: Callable[[], list]):
    registry = CollectorRegistry()
    registry.register(TaskCollector(snapshot))
    server, thread = start_http_server(address[1], addr=address[0], registry=registry)
    return server
