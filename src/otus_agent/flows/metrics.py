"""Prometheus families of the flow table (FlowStage.summary())."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from otus_agent.flows.stage import FlowStage


def flow_metrics(task: str, stage: FlowStage) -> list[Metric]:
    s = stage.summary()
    active = GaugeMetricFamily("otus_flows_active", "Flows in the flow table", labels=["task"])
    active.add_metric([task], s["active"])
    limit = GaugeMetricFamily("otus_flows_limit", "The flow table's limit", labels=["task"])
    limit.add_metric([task], s["limit"])
    created = CounterMetricFamily("otus_flows_created", "Flows created", labels=["task"])
    created.add_metric([task], s["created"])
    ended = CounterMetricFamily("otus_flows_ended", "Flows ended, by reason", labels=["task", "reason"])
    for reason, n in s["ended"].items():
        ended.add_metric([task, reason], n)
    icmp = CounterMetricFamily("otus_icmp_packets", "ICMP packets by version, type and code",
                               labels=["task", "version", "type", "code"])
    for (v, t, c), n in sorted(stage.icmp_types.items()):
        icmp.add_metric([task, str(v), str(t), str(c)], n)
    joins = CounterMetricFamily("otus_icmp_errors", "ICMP errors, by whether the quoted flow was found",
                                labels=["task", "outcome"])
    joins.add_metric([task, "joined"], s["icmp"]["errors_joined"])
    joins.add_metric([task, "unmatched"], s["icmp"]["errors_unmatched"])
    joins.add_metric([task, "truncated"], s["icmp"]["truncated"])
    evict = CounterMetricFamily("otus_table_evictions", "Entries evicted from bounded tables (limit reached)",
                                labels=["task", "table"])
    evict.add_metric([task, "flows"], s["evictions"])
    if s["reassembly"] is not None:
        evict.add_metric([task, "flow_fragments"], s["reassembly"].get("evictions", 0))
    # the timing wheels (flows/walk_cy.Wheel): at most twice the table each, rebuilt from the live flows when full
    wheel = GaugeMetricFamily("otus_flows_wheel_entries", "Entries filed in the flow table's timing wheels",
                              labels=["task", "wheel"])
    wheel_limit = GaugeMetricFamily("otus_flows_wheel_limit", "The timing wheels' limit (twice the flow table)",
                                    labels=["task", "wheel"])
    rebuilds = CounterMetricFamily("otus_flows_wheel_rebuilds", "Timing wheels rebuilt from the live flows (full)",
                                   labels=["task", "wheel"])
    for name, w in s.get("wheels", {}).items():
        wheel.add_metric([task, name], w["entries"])
        wheel_limit.add_metric([task, name], w["limit"])
        rebuilds.add_metric([task, name], w["rebuilds"])
    return [active, limit, created, ended, icmp, joins, evict, wheel, wheel_limit, rebuilds]
