"""Issue 18.3: the Events a CaptureTask tells its story with, seen as core/v1 Event objects in the emulator.

Each alert is posted once when it starts (Warning) and once when it ends (Normal), not every status
round: the tests let several rounds (0.5 s each) pass and count.  The agents' reports are made the way
agents make them (their own status entry, otus_agent.kube.status); pod states the kubelet would set are
written by the test, since no kubelet runs here.
"""
from __future__ import annotations

import time
from collections import Counter

from support import agent_report, cond, create, events, example, get, gone, status, validate_k8s, wait_for

from otus_operator.crd import GROUP, KIND, VERSION

ROUNDS_S = 1.6          # more than three status rounds of the operator under test


def reasons(api, ns: str, name: str) -> Counter:
    return Counter((e["type"], e["reason"]) for e in events(api, ns, name))


def event(api, ns: str, name: str, reason: str) -> dict:
    return wait_for(lambda: next((e for e in events(api, ns, name) if e["reason"] == reason), None),
                    what=f"a {reason} Event")


def check_shape(e: dict, obj: dict) -> None:
    """What `kubectl describe ct` lists: the object, type, reason, message, times, source (core/v1 Event)."""
    inv = e["involvedObject"]
    assert inv["apiVersion"] == f"{GROUP}/{VERSION}" and inv["kind"] == KIND
    assert (inv["name"], inv["namespace"], inv["uid"]) == (obj["metadata"]["name"], obj["metadata"]["namespace"],
                                                           obj["metadata"]["uid"])
    assert e["type"] in ("Normal", "Warning") and e["reason"] and e["message"]
    assert e["firstTimestamp"] and e["lastTimestamp"] and e["source"]["component"] == "otus-operator"
    validate_k8s({"apiVersion": "v1", "kind": "Event", **e})          # list items carry neither


def test_daemonset_task_alerts_are_posted_on_transitions(api, ns):
    t = example("daemonset")
    t["metadata"]["name"] = "story"
    create(api, ns, t)
    wait_for(lambda: api["apps"].read_namespaced_daemon_set("otus-story", ns), what="the DaemonSet")
    api["apps"].patch_namespaced_daemon_set_status("otus-story", ns, {"status": {
        "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1}})
    agent_report(api, ns, "story", "a1", packets=1000)
    wait_for(lambda: status(api, ns, "story").get("phase") == "Running", what="Running")
    obj = get(api, ns, "story")
    quiet = reasons(api, ns, "story")
    assert not [r for (typ, r) in quiet if typ == "Warning"], quiet          # a healthy start warns of nothing

    # kernel drops: 100 of the next 1100 packets (9 %) -- above the 1 % of one interval
    agent_report(api, ns, "story", "a1", packets=2000, drops=100)
    check_shape(event(api, ns, "story", "KernelDrops"), obj)
    assert "KernelDrops" in status(api, ns, "story")["alerts"]
    time.sleep(ROUNDS_S)
    assert reasons(api, ns, "story")[("Warning", "KernelDrops")] == 1        # not one per round
    # the next interval drops nothing: over (the cumulative Degraded condition is another matter)
    agent_report(api, ns, "story", "a1", packets=102_000, drops=100)
    resolved = event(api, ns, "story", "KernelDropsResolved")
    assert resolved["type"] == "Normal"
    assert "KernelDrops" not in status(api, ns, "story")["alerts"]

    # Kafka unavailable: the agent's records pile up in its spool
    agent_report(api, ns, "story", "a1", packets=103_000, drops=100, spoolBytes=5 << 20)
    e = event(api, ns, "story", "KafkaUnavailable")
    assert e["type"] == "Warning" and "agent a1" in e["message"]
    # an agent reports an error: AgentFailed, with the agent's own reason
    agent_report(api, ns, "story", "a2", state="Failed", error="interface eth9: no such device")
    e = event(api, ns, "story", "AgentFailed")
    assert e["type"] == "Warning" and "interface eth9: no such device" in e["message"] and "a2" in e["message"]
    # an agent pod crash-looping, as the kubelet reports it: a second AgentFailed, for that pod
    api["core"].create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "otus-story-x1", "namespace": ns, "labels": {"otus.io/capturetask": "story"}},
        "spec": {"containers": [{"name": "otus-agent", "image": "i"}]},
        "status": {"containerStatuses": [{"name": "otus-agent", "restartCount": 6, "ready": False, "image": "i",
                                          "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})
    wait_for(lambda: reasons(api, ns, "story")[("Warning", "AgentFailed")] == 2, what="the crash loop's Event")
    assert any("otus-story-x1" in e["message"] for e in events(api, ns, "story") if e["reason"] == "AgentFailed")
    time.sleep(ROUNDS_S)
    seen = reasons(api, ns, "story")
    assert seen[("Warning", "KafkaUnavailable")] == 1 and seen[("Warning", "AgentFailed")] == 2, seen
    assert seen[("Warning", "KernelDrops")] == 1 and seen[("Normal", "KernelDropsResolved")] == 1, seen
    for e in events(api, ns, "story"):
        check_shape(e, obj)

    # -o wide reads these (crd.py's printer columns)
    st = status(api, ns, "story")
    assert st["target"] == "nodes otus.io/capture=true" and st["totals"]["matchedCalls"] == 0
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, ns, "capturetasks", "story")
    wait_for(lambda: gone(lambda: get(api, ns, "story")), what="deleted")


def _pod(name: str, ns: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "sbc", "image": "registry.example/sbc:1.0"}]},
            "status": {"phase": "Running"}}


def test_pods_from_before_the_task_without_a_sidecar_are_one_event(api, ns):
    for n in ("sbc-a", "sbc-b"):
        api["core"].create_namespaced_pod(ns, _pod(n, ns, {"app": "sbc", "tier": "edge"}))
    api["core"].create_namespaced_pod(ns, _pod("web-a", ns, {"app": "web"}))
    create(api, ns, example("sidecar"))
    e = event(api, ns, "sbc-sip", "SidecarNotInjected")
    assert e["type"] == "Warning" and e["message"].startswith("2 pods matching app=sbc")
    assert "sbc-a, sbc-b" in e["message"] and "web-a" not in e["message"]
    check_shape(e, get(api, ns, "sbc-sip"))
    st = status(api, ns, "sbc-sip")
    assert st["target"] == "pods app=sbc" and st["pods"]["notInjected"] == ["sbc-a", "sbc-b"]
    time.sleep(ROUNDS_S)
    assert reasons(api, ns, "sbc-sip")[("Warning", "SidecarNotInjected")] == 1
    for n in ("sbc-a", "sbc-b"):                      # recreated (here: removed): the alert is over
        api["core"].delete_namespaced_pod(n, ns)
    assert event(api, ns, "sbc-sip", "SidecarNotInjectedResolved")["type"] == "Normal"
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, ns, "capturetasks", "sbc-sip")
    wait_for(lambda: gone(lambda: get(api, ns, "sbc-sip")), what="deleted")


def test_an_invalid_selector_is_rejected_with_one_event(api, ns):
    # the emulator does not enforce the CRD schema; the label syntax is not in it anyway (the operator checks)
    create(api, ns, {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "badsel"},
                     "spec": {"target": {"pods": {"selector": {"app": "sbc edge!"}}}}})
    e = event(api, ns, "badsel", "SelectorInvalid")
    assert e["type"] == "Warning" and "invalid label value 'sbc edge!'" in e["message"]
    check_shape(e, get(api, ns, "badsel"))
    st = status(api, ns, "badsel")
    assert st["phase"] == "Failed" and cond(st, "Ready")["reason"] == "InvalidSpec"
    assert gone(lambda: api["core"].read_namespaced_config_map("otus-badsel", ns))      # nothing was made
    time.sleep(ROUNDS_S)
    assert reasons(api, ns, "badsel")[("Warning", "SelectorInvalid")] == 1
    api["custom"].delete_namespaced_custom_object(GROUP, VERSION, ns, "capturetasks", "badsel")
    wait_for(lambda: gone(lambda: get(api, ns, "badsel")), what="deleted")
