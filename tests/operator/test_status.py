"""Status roll-up: agents' entries to phase, totals and metav1-style conditions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jsonschema

from otus_operator import status
from otus_operator.crd import CaptureTaskSpec, CaptureTaskStatus
from otus_operator.status import roll_up

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
T = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
NODES = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "limits": {"duration": "1h"}})


def agent(state="Capturing", packets=1000, drops=0, spool=0, when=T, error=None):
    return {"node": "n1", "state": state, "packets": packets, "drops": drops, "sipMessages": packets // 2,
            "spoolBytes": spool, "lastReport": when, "error": error}


def conds(status) -> dict:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_pending_then_running_ready():
    s = roll_up(NODES, {}, 1, NOW)
    assert s["phase"] == "Pending" and conds(s)["Ready"] == ("False", "AgentsPending") and s["mode"] == "DaemonSet"
    s2 = roll_up(NODES, {"a1": agent(), "a2": agent(packets=500)}, 2, NOW + timedelta(seconds=5), s, desired_agents=2)
    assert s2["phase"] == "Running" and s2["readyAgents"] == 2 and conds(s2)["Ready"] == ("True", "AgentsReady")
    assert s2["totals"] == {"packets": 1500, "drops": 0, "sipMessages": 750, "matchedCalls": 0,
                            "mediaStreams": 0}
    assert s2["observedGeneration"] == 2 and s2["target"] == "nodes (all)"
    CaptureTaskStatus.model_validate(s2)
    # Ready went False -> True: its transition time moved; Degraded stayed False: its time did not
    old = {c["type"]: c for c in s["conditions"]}
    new = {c["type"]: c for c in s2["conditions"]}
    assert new["Ready"]["lastTransitionTime"] != old["Ready"]["lastTransitionTime"]
    assert new["Degraded"]["lastTransitionTime"] == old["Degraded"]["lastTransitionTime"]


def test_partial_and_stale_agents_not_ready():
    stale = (NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = roll_up(NODES, {"a1": agent(), "a2": agent(when=stale)}, 1, NOW, desired_agents=2)
    assert s["readyAgents"] == 1 and conds(s)["Ready"] == ("False", "AgentsNotReady")


def test_degraded_reasons():
    s = roll_up(NODES, {"a1": agent(packets=1000, drops=50), "a2": agent(spool=5 << 20)}, 1, NOW)
    assert conds(s)["Degraded"] == ("True", "KernelDrops")
    assert "KafkaUnavailable" not in conds(s)["Degraded"][1] and "spool" in s["conditions"][2]["message"]
    s = roll_up(NODES, {"a1": agent(), "a2": agent(state="Failed", error="no such interface")}, 1, NOW)
    assert s["phase"] == "Running" and conds(s)["Degraded"] == ("True", "AgentFailed")
    s = roll_up(NODES, {"a1": agent(state="Failed")}, 1, NOW)
    assert s["phase"] == "Failed" and conds(s)["Ready"] == ("False", "AgentsFailed")


def test_suspend_and_duration_elapsed():
    susp = CaptureTaskSpec.model_validate({"target": {"pods": {"selector": {"app": "sbc"}}}, "suspend": True})
    s = roll_up(susp, {"a1": agent()}, 3, NOW)
    assert s["phase"] == "Suspended" and s["mode"] == "Sidecar" and conds(s)["Ready"] == ("False", "Suspended")
    first = roll_up(NODES, {"a1": agent()}, 1, NOW)
    later = roll_up(NODES, {"a1": agent()}, 1, NOW + timedelta(hours=1, seconds=1), first)
    assert later["phase"] == "Succeeded" and later["completionTime"] is not None
    assert conds(later)["Ready"] == ("False", "Completed") and later["startTime"] == first["startTime"]
    again = roll_up(NODES, {"a1": agent()}, 1, NOW + timedelta(hours=2), later)
    assert again["phase"] == "Succeeded" and again["completionTime"] == later["completionTime"]


def test_status_fits_the_crd_schema():
    from otus_operator import crd

    from .test_crd_render import _jsonschema
    schema = _jsonschema(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"])
    s = roll_up(NODES, {"a1": agent(), "a2": agent(drops=100)}, 4, NOW)
    jsonschema.validate({**s, "agents": {"a1": agent()}}, schema)


def test_crash_looping_agents_degrade():
    pods = [{"metadata": {"name": "ok"}, "status": {"containerStatuses": [{"name": "otus-agent", "restartCount": 1,
                                                                            "state": {"running": {}}}]}},
            {"metadata": {"name": "loop"}, "status": {"containerStatuses": [
                {"name": "otus-agent", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}},
            {"metadata": {"name": "app-loops"}, "status": {"containerStatuses": [
                {"name": "app", "restartCount": 9, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}},
            {"metadata": {"name": "sidecar"}, "status": {"initContainerStatuses": [
                {"name": "otus-agent", "restartCount": 7, "state": {"running": {}}}]}}]
    assert status.crash_looping(pods) == ["loop", "sidecar"]
    st = roll_up(NODES, {"a": agent()}, 1, NOW, desired_agents=1, crashing=["loop"])
    d = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert d["status"] == "True" and d["reason"] == "AgentCrashLooping" and "loop" in d["message"]


# ----------------------------------------------------------------- issue 13: ports, reasons, totals, departures
def _spec_nodes():
    from otus_operator.crd import CaptureTaskSpec
    return CaptureTaskSpec.model_validate({"target": {"nodes": {}}})


def test_two_daemonset_tasks_on_one_node_do_not_conflict_on_host_ports():
    """Issue 13.3: hostNetwork container ports are host ports; each task's agents get their own."""
    from otus_operator import render
    spec = _spec_nodes()
    p1 = render.allocate_port(set())
    p2 = render.allocate_port({p1})
    a, b = (render.daemonset(n, "voip", "u", spec, port=p) for n, p in (("one", p1), ("two", p2)))
    ports = []
    for ds in (a, b):
        pod = ds["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        c = pod["containers"][0]
        port = c["ports"][0]["containerPort"]
        assert c["args"][c["args"].index("--metrics-listen") + 1] == f":{port}"   # the agent binds what it declares
        ports.append(port)
    assert len(set(ports)) == 2 and p1 == render.METRICS_PORT
    assert render.metrics_service("two", "voip", "u", p2)["spec"]["ports"][0]["port"] == p2
    assert render.allocate_port(set(range(9091, 9100))) == 9100


def test_an_unschedulable_agent_says_why():
    from otus_operator import status
    pending = {"metadata": {"name": "otus-two-x"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."}]}}
    why = status.unschedulable([pending, {"metadata": {"name": "ok"}, "status": {"phase": "Running"}}])
    assert why == ["otus-two-x: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod "
                   "ports."]
    st = status.roll_up(_spec_nodes(), {}, 1, NOW, {}, desired_agents=1, unscheduled=why)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert st["phase"] == "Pending" and ready["reason"] == "AgentsUnschedulable" and "free ports" in ready["message"]
    assert next(c for c in st["conditions"] if c["type"] == "Degraded")["reason"] == "AgentUnschedulable"


def test_totals_never_go_backwards_when_agents_restart_their_counters():
    """Issue 13.7: a spec change restarts the agents' counters (500 -> 100); totals keep growing."""
    from otus_operator import status
    spec = _spec_nodes()

    def entry(packets):
        return {"state": "Capturing", "packets": packets, "drops": 0, "sipMessages": packets // 10,
                "lastReport": "2026-01-01T00:00:00Z"}
    st = status.roll_up(spec, {"a": entry(500)}, 1, NOW, {})
    assert st["totals"]["packets"] == 500
    seen = [500]
    for packets in (100, 300, 50, 50, 0, 20):          # restarts at 100, 50, 0
        st = status.roll_up(spec, {"a": entry(packets)}, 2, NOW, st)
        seen.append(st["totals"]["packets"])
    assert seen == [500, 600, 800, 850, 850, 850, 870]
    assert all(x <= y for x, y in zip(seen, seen[1:]))
    # an agent that went away keeps what it counted; a new one adds
    st = status.roll_up(spec, {"b": entry(5)}, 2, NOW, st)
    assert st["totals"]["packets"] == 875


def test_departed_agents_leave_the_status():
    from datetime import timedelta

    from otus_operator import status
    old = (NOW - timedelta(seconds=status.STALE_AFTER_S + 5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    agents = {"gone": {"lastReport": old}, "racing": {"lastReport": fresh}, "alive": {"lastReport": old}}
    assert status.departed(agents, {"alive"}, NOW) == ["gone"]
