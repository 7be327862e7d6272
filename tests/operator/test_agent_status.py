"""The agent's side of status: its entry on the CaptureTask, rate-limited, and `otus agent` following its task file.

Against the same Kubernetes emulator as the operator tests, over HTTP with the
official client.  The capture runs for real on loopback (root needed).
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from kubernetes import client
from support import Clock, G, P, V, wait_for

from otus_agent.kube.status import StatusReporter, entry

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import otus_bin  # noqa: E402
from netns import stop  # noqa: E402


def _task_cr(api, ns: str, name: str) -> None:
    # sidecar mode with a selector that matches nothing: the operator (if running) creates no DaemonSet
    api.create_namespaced_custom_object(G, V, ns, P, {
        "apiVersion": f"{G}/{V}", "kind": "CaptureTask", "metadata": {"name": name, "namespace": ns},
        "spec": {"target": {"pods": {"selector": {"app": f"none-{name}"}}}}})


def _agents(api, ns: str, name: str) -> dict:
    return (api.get_namespaced_custom_object(G, V, ns, P, name).get("status") or {}).get("agents") or {}


def test_reporter_is_rate_limited_and_notices_a_deleted_task(cluster):
    api = client.CustomObjectsApi(cluster.client())
    ns = f"a-{uuid.uuid4().hex[:6]}"
    _task_cr(api, ns, "rl")
    clock = Clock()
    r = StatusReporter(api, ns, "rl", "agent-1", min_interval_s=10, clock=clock)
    e = entry({"status": "running", "packets": 5, "kernel_drops": 1, "sip_messages": 2},
              {"report": {"spool_bytes": 77}}, "node-1", "pod-1")
    assert e["state"] == "Capturing" and e["spoolBytes"] == 77 and e["drops"] == 1
    assert r.report(e)
    for _ in range(20):                        # a burst within the interval: one patch only
        clock.t += 0.3
        assert not r.report({**e, "packets": e["packets"] + 1})
    assert r.patches == 1 and r.skipped == 20
    assert _agents(api, ns, "rl")["agent-1"]["packets"] == 5
    clock.t += 0.5                             # a state change goes out early, but not within a second
    assert r.report({**e, "state": "Failed", "error": "boom"})
    assert not r.report({**e, "state": "Stopped"})
    clock.t += 1.0
    assert r.report({**e, "state": "Stopped"})
    assert _agents(api, ns, "rl")["agent-1"]["state"] == "Stopped"
    # a second agent writes its own key only
    StatusReporter(api, ns, "rl", "agent-2").report({**e, "pod": "pod-2"})
    assert set(_agents(api, ns, "rl")) == {"agent-1", "agent-2"}
    api.delete_namespaced_custom_object(G, V, ns, P, "rl")
    wait_for(lambda: not api.list_namespaced_custom_object(G, V, ns, P)["items"], what="the CR deleted")
    clock.t += 60
    assert not r.report(e) and r.gone and r.failures == 1


def _udp_sip(port: int, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            msg = (f"OPTIONS sip:uas@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{i}\r\n"
                   f"From: <sip:uac@127.0.0.1>;tag=a{i}\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: agent-{i}@test\r\n"
                   f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", port))


def test_otus_agent_follows_its_task_file_and_reports(cluster, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (a packet socket on loopback)")
    api = client.CustomObjectsApi(cluster.client())
    ns, name = f"a-{uuid.uuid4().hex[:6]}", "lo-task"
    _task_cr(api, ns, name)
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    out = tmp_path / "records.jsonl"
    spec = {"id": name, "interfaces": ["lo"], "bpf_filter": "udp port 15060", "sip": {"ports": [15060]},
            "reporters": [{"type": "file", "path": str(out)}]}

    def write(d: dict | str, file: str = "task.yaml") -> None:   # as the kubelet does: a new file, renamed
        tmp = task_dir / f".{file}.tmp"
        tmp.write_text(d if isinstance(d, str) else yaml.safe_dump(d))
        os.replace(tmp, task_dir / file)
    write(spec)
    env = {**os.environ, "OTUS_TASK_NAMESPACE": ns, "OTUS_TASK": name, "OTUS_AGENT_NAME": "agent-lo",
           "OTUS_NODE": "node-lo", "OTUS_POD": "pod-lo"}
    proc = subprocess.Popen([otus_bin(), "agent", "--task-file", str(task_dir / "task.yaml"), "--kubeconfig",
                             cluster.kubeconfig, "--state-dir", str(tmp_path / "state"), "--status-interval", "1",
                             "--poll-interval", "0.2", "--metrics-listen", "127.0.0.1:0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        a = wait_for(lambda: _agents(api, ns, name).get("agent-lo", {}).get("state") == "Capturing"
                     and _agents(api, ns, name)["agent-lo"], what="Capturing")
        assert a["node"] == "node-lo" and a["pod"] == "pod-lo"
        time.sleep(0.5)
        _udp_sip(15060, 5)
        a = wait_for(lambda: _agents(api, ns, name)["agent-lo"]["sipMessages"] >= 5
                     and _agents(api, ns, name)["agent-lo"], what="5 SIP messages counted")
        assert a["packets"] >= 5 and a.get("error") is None
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        assert {r["call_id"] for r in recs} >= {f"agent-{i}@test" for i in range(5)}

        # an invalid file: the running task stays, the error shows on the CR
        write("id: lo-task\ninterfaces: [lo]\nworkers: 0\n")
        a = wait_for(lambda: (_agents(api, ns, name)["agent-lo"].get("error") or "").startswith("invalid task file")
                     and _agents(api, ns, name)["agent-lo"], what="the error reported")
        assert "workers" in a["error"] and a["state"] == "Capturing"

        # a new valid file (another port): the task restarts in place, the process stays
        write({**spec, "bpf_filter": "udp port 15062", "sip": {"ports": [15062]}})
        wait_for(lambda: _agents(api, ns, name)["agent-lo"].get("error") is None
                 and _agents(api, ns, name)["agent-lo"]["state"] == "Capturing", what="restarted")
        time.sleep(0.5)
        before = len(out.read_text().splitlines())
        _udp_sip(15060, 3)                       # the old port: filtered out now
        _udp_sip(15062, 2)
        wait_for(lambda: len(out.read_text().splitlines()) >= before + 2, what="records on the new port")
        time.sleep(0.5)
        assert len(out.read_text().splitlines()) == before + 2
        assert proc.poll() is None

        # suspend, then resume
        write("true", "suspend")
        wait_for(lambda: _agents(api, ns, name)["agent-lo"]["state"] == "Suspended", what="Suspended")
        write("false", "suspend")
        wait_for(lambda: _agents(api, ns, name)["agent-lo"]["state"] == "Capturing", what="Capturing again")
    finally:
        stop(proc, timeout=15)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert _agents(api, ns, name)["agent-lo"]["state"] == "Stopped"


def test_task_from_a_configmap_through_the_api(cluster, tmp_path):
    """What an ephemeral agent does: the task comes from the ConfigMap via the API, as files."""
    from otus_agent.kube.configmap import ConfigMapSource
    core = client.CoreV1Api(cluster.client())
    ns = f"c-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "otus-t", "namespace": ns},
                                           "data": {"task.yaml": "id: t\ninterfaces: [lo]\n", "suspend": "false"}})
    src = ConfigMapSource(core, ns, "otus-t", str(tmp_path / "task"))
    assert src.sync()
    assert (tmp_path / "task" / "task.yaml").read_text() == "id: t\ninterfaces: [lo]\n"
    core.patch_namespaced_config_map("otus-t", ns, {"data": {"suspend": "true"}})
    assert src.sync() and (tmp_path / "task" / "suspend").read_text() == "true"
    core.delete_namespaced_config_map("otus-t", ns)
    assert not src.sync() and src.failures == 1                   # the last files stay
    assert (tmp_path / "task" / "task.yaml").exists()
    bad = subprocess.run([otus_bin(), "agent", "--task-configmap", "nonsense"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "NAMESPACE/NAME" in bad.stderr
