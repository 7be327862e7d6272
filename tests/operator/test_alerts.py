"""Alerts (issue 18.3): what the operator posts as Events on a CaptureTask, and only on transitions."""
from __future__ import annotations

from otus_operator import alerts
from otus_operator.crd import AgentStatus


def agent(**kw) -> AgentStatus:
    return AgentStatus.model_validate({"state": "Capturing", **kw})


def keys(found) -> list[str]:
    return sorted(a.key for a in found)


def test_each_kind_of_trouble_is_an_alert():
    found = alerts.active({"a1": agent(spoolBytes=5 << 20), "a2": agent(state="Failed", error="no such device eth9"),
                           "a3": agent(kafkaAvailable=False), "a4": agent(spoolBytes=100)},
                          crashing=["pod-x"], failed=["pod-y", "pod-x"], window=(1000, 50), previous=[],
                          not_injected=3, not_injected_names=["old-0", "old-1", "old-2"], selector="app=sbc")
    assert keys(found) == ["AgentFailed/a2", "AgentFailed/pod-x", "AgentFailed/pod-y", "KafkaUnavailable/a1",
                           "KafkaUnavailable/a3", "KernelDrops", "SidecarNotInjected"]
    by = {a.key: a for a in found}
    assert "no such device eth9" in by["AgentFailed/a2"].message and "crash-looping" in by["AgentFailed/pod-x"].message
    assert "50 of 1050 packets (4.8 %)" in by["KernelDrops"].message
    assert by["SidecarNotInjected"].message.startswith("3 pods matching app=sbc have no capture agent")
    assert "old-0, old-1, old-2" in by["SidecarNotInjected"].message
    assert {a.reason for a in found} == {"AgentFailed", "KafkaUnavailable", "KernelDrops", "SidecarNotInjected"}


def test_kernel_drops_look_at_one_interval_against_the_threshold():
    calm = dict(crashing=[], failed=[], previous=[])
    assert not alerts.active({}, window=(1000, 10), **calm)                      # 0.99 %: under 1 %
    assert keys(alerts.active({}, window=(1000, 11), **calm)) == ["KernelDrops"]
    assert not alerts.active({}, window=(1000, 11), drop_ratio=0.05, **calm)     # the threshold is configurable
    # the window is the difference of the totals, not the totals: an old burst does not keep the alert up
    assert alerts.drop_window({"packets": 10_000, "drops": 5_000}, {"packets": 20_000, "drops": 5_001}) == (10_000, 1)
    assert alerts.drop_window(None, {"packets": 7, "drops": 1}) == (7, 1)
    # no packets in the interval: the alert keeps its state (nothing says the drops are over, or began)
    assert keys(alerts.active({}, window=(0, 0), crashing=[], failed=[], previous=["KernelDrops"])) == ["KernelDrops"]
    assert not alerts.active({}, window=(0, 0), **calm)


def test_only_transitions_are_posted():
    first = alerts.active({"a1": agent(spoolBytes=2 << 20)}, crashing=[], failed=[], window=(100, 50), previous=[])
    started, ended = alerts.transitions([], first)
    assert keys(started) == ["KafkaUnavailable/a1", "KernelDrops"] and ended == []
    again = alerts.active({"a1": agent(spoolBytes=3 << 20)}, crashing=[], failed=[], window=(100, 40),
                          previous=keys(first))
    assert alerts.transitions(keys(first), again) == ([], [])                  # still in effect: nothing new
    # a second agent in trouble is news even while the first one still is; the drops are over
    later = alerts.active({"a1": agent(spoolBytes=3 << 20), "a2": agent(spoolBytes=9 << 20)}, crashing=[],
                          failed=[], window=(10_000, 0), previous=keys(again))
    started, ended = alerts.transitions(keys(again), later)
    assert keys(started) == ["KafkaUnavailable/a2"] and ended == ["KernelDrops"]


def test_long_pod_lists_are_cut():
    names = [f"p{i:02d}" for i in range(25)]
    a = alerts.active({}, crashing=[], failed=[], window=(0, 0), previous=[], not_injected=25,
                      not_injected_names=names, selector="app=x")[0]
    assert "p09 and 15 more" in a.message and "p10" not in a.message


def test_an_unschedulable_agent_pod_is_an_alert_of_its_own():
    found = alerts.active({}, crashing=[], failed=[], window=(0, 0), previous=[],
                          unscheduled=["otus-t-x: 0/1 nodes are available: 1 node(s) didn't have free ports"])
    assert keys(found) == ["AgentUnschedulable/otus-t-x"] and "free ports" in found[0].message
