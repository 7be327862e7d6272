"""Per-domain Prometheus counters, bounded: ``top_n`` domains plus ``other`` (dns/traffic.py)."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from otus_agent.dns.stage import DnsStage


def domain_metrics(task: str, stage: DnsStage) -> list[Metric]:
    """The seed's network_domain_* metrics under Otus's prefix; label ``domain`` is one of the top
    ``top_domains`` by bytes or ``other`` (so at most top_domains + 1 series per task and metric)."""
    sent = CounterMetricFamily("otus_domain_bytes_sent", "Frame bytes sent to addresses a domain resolved to",
                               labels=["task", "domain"])
    recv = CounterMetricFamily("otus_domain_bytes_received", "Frame bytes received from a domain's addresses",
                               labels=["task", "domain"])
    conns = CounterMetricFamily("otus_domain_connections", "TCP connections (SYNs) opened to a domain's addresses",
                                labels=["task", "domain"])
    acc = CounterMetricFamily("otus_domains_accessed", "DNS answers seen for a domain", labels=["task", "domain"])
    for dom, (s, r, c, a) in stage.traffic.top().items():
        sent.add_metric([task, dom], s)
        recv.add_metric([task, dom], r)
        conns.add_metric([task, dom], c)
        acc.add_metric([task, dom], a)
    sm = stage.summary()
    msgs = CounterMetricFamily("otus_dns_messages", "DNS messages, by kind", labels=["task", "kind"])
    msgs.add_metric([task, "query"], sm["queries"])
    msgs.add_metric([task, "response"], sm["responses"])
    rcodes = CounterMetricFamily("otus_dns_responses_by_rcode", "DNS responses by rcode", labels=["task", "rcode"])
    for rc, n in sm["rcodes"].items():
        rcodes.add_metric([task, rc], n)
    bad = CounterMetricFamily("otus_dns_malformed", "Malformed DNS messages by reason", labels=["task", "reason"])
    for reason, n in sm["malformed"].items():
        bad.add_metric([task, reason], n)
    cache = GaugeMetricFamily("otus_dns_cache_entries", "Address -> domain cache entries", labels=["task"])
    cache.add_metric([task], sm["cache"]["entries"])
    evict = CounterMetricFamily("otus_table_evictions", "Entries evicted from bounded tables (limit reached)",
                                labels=["task", "table"])
    evict.add_metric([task, "dns_cache"], sm["cache"]["evictions"])
    evict.add_metric([task, "dns_pending"], sm["pending_evicted"])
    return [sent, recv, conns, acc, msgs, rcodes, bad, cache, evict]
