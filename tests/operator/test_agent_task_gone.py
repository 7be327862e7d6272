"""`otus agent` when its task disappears: the CaptureTask deleted (being deleted, then 404), its access
revoked (403), its ConfigMap deleted, its task file removed.

The agent is run for real (a packet socket on loopback, root needed) against
the operator tests' Kubernetes emulator, over HTTP.  The emulator is extended
here, in a subclass, only to answer 403 for a revoked task (what a real API
server answers once the task's Role is gone) and to record the requests made
about the task, so the back-off can be seen.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from emulator import Cluster, StampingEmulator
from kmock import KubernetesError
from kubernetes import client
from support import G, P, V, free_port, poll, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import otus_bin  # noqa: E402
from netns import stop  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a packet socket on loopback)")


class RevokingEmulator(StampingEmulator):
    """403 for the CaptureTasks named in ``revoked``; every request about a CaptureTask recorded."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.revoked: set[str] = set()
        self.task_requests: list[tuple[float, str, str, str | None]] = []   # (time, name, method, subresource)

    async def _handle(self, request):
        res = request.resource
        if res is not None and getattr(res, "plural", None) == P and request.name is not None:
            self.task_requests.append((time.monotonic(), request.name, str(request.method), request.subresource))
            if request.name in self.revoked:
                raise KubernetesError(status=403, reason="Forbidden",
                                      message=f'capturetasks.otus.io "{request.name}" is forbidden')
        return await super()._handle(request)


@pytest.fixture(scope="module")
def kube():
    c = Cluster(RevokingEmulator).start()
    yield c
    c.stop()


def _send(port: int, tag: str, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            msg = (f"OPTIONS sip:uas@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{tag}{i}"
                   f"\r\nFrom: <sip:uac@127.0.0.1>;tag=a{i}\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: {tag}-{i}@test\r\n"
                   f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", port))


class Agent:
    """One `otus agent` process on loopback, its records and its log."""

    def __init__(self, kube, tmp_path, ns: str, name: str, port: int, configmap: str | None = None,
                 extra: tuple[str, ...] = ()):
        self.dir = tmp_path
        self.out = tmp_path / "records.jsonl"
        self.log_path = tmp_path / "agent.log"
        self.task_dir = tmp_path / "task"
        self.task_dir.mkdir()
        self.spec = {"id": name, "interfaces": ["lo"], "bpf_filter": f"udp port {port}", "sip": {"ports": [port]},
                     "reporters": [{"type": "file", "path": str(self.out)}]}
        if configmap is None:
            self.write_task()
            src = ["--task-file", str(self.task_dir / "task.yaml")]
        else:
            src = ["--task-configmap", configmap]
        env = {**os.environ, "OTUS_TASK_NAMESPACE": ns, "OTUS_TASK": name, "OTUS_AGENT_NAME": "agent-1",
               "OTUS_NODE": "node-1", "OTUS_POD": "pod-1"}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([otus_bin(), "agent", *src, "--kubeconfig", kube.kubeconfig,
                                      "--state-dir", str(tmp_path / "state"), "--poll-interval", "0.2",
                                      "--task-check-interval", "1", "--metrics-listen", "", "--log-format", "text",
                                      *extra], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def write_task(self) -> None:            # as the kubelet does: a new file, renamed over the old
        tmp = self.task_dir / ".task.yaml.tmp"
        tmp.write_text(yaml.safe_dump(self.spec))
        os.replace(tmp, self.task_dir / "task.yaml")

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.out.read_text().splitlines()] if self.out.exists() else []

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, needle: str) -> list[str]:
        return [x for x in self.text().splitlines() if needle in x]

    def captures(self, port: int, tag: str, n: int = 3) -> bool:
        """Whether ``n`` new messages sent now are recorded (waits for them, or 1.5 s for none)."""
        before = len(self.records())
        _send(port, tag, n)
        if poll(lambda: len(self.records()) >= before + n, timeout=1.5):
            return True
        assert len(self.records()) == before, "some but not all messages recorded"
        return False

    def finish(self) -> int:
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        finally:
            stop(self.proc, timeout=10)
            self.log.close()
        return self.proc.returncode


def _cr(api, ns: str, name: str, finalizers: list[str] | None = None) -> None:
    meta = {"name": name, "namespace": ns, **({"finalizers": finalizers} if finalizers else {})}
    api.create_namespaced_custom_object(G, V, ns, P, {
        "apiVersion": f"{G}/{V}", "kind": "CaptureTask", "metadata": meta,
        "spec": {"target": {"pods": {"selector": {"app": f"none-{name}"}}}}})


def _agent_state(api, ns: str, name: str) -> str | None:
    return (((api.get_namespaced_custom_object(G, V, ns, P, name).get("status") or {}).get("agents") or {})
            .get("agent-1") or {}).get("state")


def test_deleted_task_stops_capture_within_seconds_and_the_agent_idles_quietly(kube, tmp_path):
    api = client.CustomObjectsApi(kube.client())
    ns, name, port = f"g-{uuid.uuid4().hex[:6]}", "gone", free_port(udp=True)
    _cr(api, ns, name, finalizers=["test.otus.io/hold"])     # deletion first marks it, as the operator's does
    # --status-interval 30: the task's disappearance is seen by the GET check, not by a patch
    a = Agent(kube, tmp_path, ns, name, port, extra=("--status-interval", "30"))
    try:
        wait_for(lambda: _agent_state(api, ns, name) == "Capturing", timeout=30, what="Capturing")
        wait_for(lambda: a.captures(port, "before"), timeout=20, what="records before the deletion")

        api.delete_namespaced_custom_object(G, V, ns, P, name)
        t0 = time.monotonic()
        assert api.get_namespaced_custom_object(G, V, ns, P, name)["metadata"]["deletionTimestamp"]
        wait_for(lambda: a.lines("task gone ("), timeout=10, interval=0.05, what="the agent to notice")
        assert time.monotonic() - t0 < 5, "stopped within seconds"
        assert "being deleted" in a.lines("task gone (")[0] and "capture stopped" in a.lines("task gone (")[0]
        assert not a.captures(port, "after-delete")            # capture has stopped

        # the finalizer goes, the object with it: from now on 404
        api.patch_namespaced_custom_object(G, V, ns, P, name, {"metadata": {"finalizers": None}})
        wait_for(lambda: not api.list_namespaced_custom_object(G, V, ns, P)["items"], what="the CR gone")
        t_idle = time.monotonic()
        time.sleep(6)
        assert a.proc.poll() is None                            # idling, not exited (no crash loop)
        assert not a.captures(port, "idle")
        assert len(a.lines("task gone (")) == 1                 # one line on the transition ...
        assert not a.lines("failed")                            # ... and no failure spam
        gets = [t for t, n, m, sub in kube.emulator.task_requests if n == name and t >= t_idle]
        assert 1 <= len(gets) <= 4, f"rechecks back off (1, 2, 4 s): {len(gets)} in 6 s"
    finally:
        rc = a.finish()
    assert rc == 0, a.text()[-3000:]
    assert a.lines("nothing to report")
    assert not api.list_namespaced_custom_object(G, V, ns, P)["items"]   # no patch brought anything back


def test_revoked_access_and_a_removed_task_file_stop_capture_until_they_come_back(kube, tmp_path):
    api = client.CustomObjectsApi(kube.client())
    ns, name, port = f"r-{uuid.uuid4().hex[:6]}", "revoked", free_port(udp=True)
    _cr(api, ns, name)
    a = Agent(kube, tmp_path, ns, name, port, extra=("--status-interval", "1"))
    try:
        wait_for(lambda: _agent_state(api, ns, name) == "Capturing", timeout=30, what="Capturing")
        wait_for(lambda: a.captures(port, "before"), timeout=20, what="records before the revocation")

        kube.emulator.revoked.add(name)                         # the task's Role deleted: 403 on the task
        t0 = time.monotonic()
        wait_for(lambda: a.lines("task gone ("), timeout=10, interval=0.05, what="the agent to notice the 403")
        assert time.monotonic() - t0 < 5
        assert "403 Forbidden" in a.lines("task gone (")[0]
        assert not a.captures(port, "revoked")

        kube.emulator.revoked.discard(name)                     # access back: capture resumes
        wait_for(lambda: a.lines("capture resumes"), timeout=15, what="resumed")
        wait_for(lambda: _agent_state(api, ns, name) == "Capturing", what="Capturing again")
        wait_for(lambda: a.captures(port, "restored"), timeout=10, what="records after the restore")

        (a.task_dir / "task.yaml").unlink()                     # the task file removed
        wait_for(lambda: len(a.lines("task gone (")) == 2, timeout=10, what="the file's removal noticed")
        assert "task file" in a.lines("task gone (")[1] and "removed" in a.lines("task gone (")[1]
        assert not a.captures(port, "no-file")
        a.write_task()
        wait_for(lambda: len(a.lines("capture resumes")) == 2, timeout=10, what="resumed with the file")
        wait_for(lambda: a.captures(port, "file-back"), timeout=10, what="records with the file back")
        assert a.proc.poll() is None
    finally:
        rc = a.finish()
    assert rc == 0, a.text()[-3000:]
    assert _agent_state(api, ns, name) == "Stopped"


def test_deleted_configmap_stops_an_agent_reading_it_through_the_api(kube, tmp_path):
    api = client.CustomObjectsApi(kube.client())
    core = client.CoreV1Api(kube.client())
    ns, name, port = f"c-{uuid.uuid4().hex[:6]}", "cm-task", free_port(udp=True)
    _cr(api, ns, name)
    spec = {"id": name, "interfaces": ["lo"], "bpf_filter": f"udp port {port}", "sip": {"ports": [port]},
            "reporters": [{"type": "file", "path": str(tmp_path / "records.jsonl")}]}
    core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": f"otus-{name}", "namespace": ns},
                                           "data": {"task.yaml": yaml.safe_dump(spec)}})
    a = Agent(kube, tmp_path, ns, name, port, configmap=f"{ns}/otus-{name}", extra=("--status-interval", "30"))
    try:
        wait_for(lambda: _agent_state(api, ns, name) == "Capturing", timeout=30, what="Capturing")
        wait_for(lambda: a.captures(port, "before"), timeout=20, what="records before the deletion")
        core.delete_namespaced_config_map(f"otus-{name}", ns)
        wait_for(lambda: a.lines("task gone ("), timeout=10, interval=0.05, what="the agent to notice")
        assert f"task ConfigMap {ns}/otus-{name}: 404" in a.lines("task gone (")[0]
        assert not a.captures(port, "after")
        time.sleep(3)
        assert len(a.lines("task gone (")) == 1 and not a.lines("failed")   # one line, no failure spam
    finally:
        rc = a.finish()
    assert rc == 0, a.text()[-3000:]
