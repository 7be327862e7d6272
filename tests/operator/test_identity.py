"""The node agent's identity watch (otus_agent/kube/identity.py) against the Kubernetes API emulator.

Pods and Services are created, changed and deleted through the official client; the table follows
them over real HTTP list+watch.  A 410 Gone (as an HTTP status and as a watch ERROR event, both of
which a real API server sends) makes it relist.  Records of SIP between two namespaces, through
``otus run`` and through ``otus agent`` (real capture on loopback, root), carry the right pod,
workload and node.  The agent's RBAC: the identity ClusterRole allows exactly get/list/watch of pods
and Services, and every call the watch made is one of those.

The emulator's own quirks (it ignores ``limit`` and replays every object as ADDED on each watch,
lists carry no usable resourceVersion) are absorbed by the code as a real server's answers would be:
upserts are idempotent and a list replaces what the table knew.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from kmock import KubernetesError
from kubernetes import client
from support import Clock, wait_for

from otus_agent import identity as hooks
from otus_agent.kube import identity as ki
from otus_operator import rbac, render

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import otus_bin  # noqa: E402
from netns import stop as stop_proc  # noqa: E402


@pytest.fixture(autouse=True)
def _clean():
    hooks.clear()
    yield
    hooks.clear()


def _pod(core, ns: str, name: str, ips: list[str], node: str, owner: tuple[str, str] | None = None,
         labels: dict | None = None, host_network: bool = False) -> dict:
    meta: dict = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "o-1",
                                    "controller": True}]
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}}
    return core.create_namespaced_pod(ns, body, _preload_content=False)


def _svc(core, ns: str, name: str, ips: list[str], selector: dict) -> None:
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name,
                                                                                           "namespace": ns},
                                        "spec": {"clusterIP": ips[0], "clusterIPs": ips, "selector": selector,
                                                 "ports": [{"port": 5060, "protocol": "UDP"}]}},
                                   _preload_content=False)


def _start(cluster, clock=None, grace_s: float = 60.0):
    core = client.CoreV1Api(cluster.client())
    table = ki.IdentityTable(grace_s=grace_s, clock=clock or time.monotonic)
    w = ki.IdentityWatch(core, table, backoff_s=0.05, max_backoff_s=0.2).start()
    assert all(e.wait(10) for e in w.synced.values()), "the first lists did not finish"
    return core, table, w


def _ns() -> str:
    return f"id-{uuid.uuid4().hex[:6]}"


def test_the_table_follows_pods_and_services(cluster):
    clock = Clock()
    core, table, w = _start(cluster, clock)
    ns = _ns()
    try:
        _svc(core, ns, "sip", ["10.96.7.1"], {"app": "sbc"})
        # first: the watch sees pods in order, so once db-0 resolves this one has been handled too
        _pod(core, ns, "kube-proxy-x", ["192.168.7.10"], "node-a", ("DaemonSet", "kube-proxy"), host_network=True)
        _pod(core, ns, "sbc-7d4b9c6f5-x2x9z", ["10.7.0.1", "fd00:7::1"], "node-a",
             ("ReplicaSet", "sbc-7d4b9c6f5"), {"app": "sbc", "pod-template-hash": "7d4b9c6f5"})
        _pod(core, ns, "db-0", ["10.7.0.2"], "node-b", ("StatefulSet", "db"), {"app": "db"})
        want = {"namespace": ns, "pod": "sbc-7d4b9c6f5-x2x9z", "workload": {"kind": "Deployment", "name": "sbc"},
                "node": "node-a", "service": "sip"}
        wait_for(lambda: hooks.ADDRESSES.get("fd00:7::1") == want, what="the Deployment's pod, both families")
        assert hooks.ADDRESSES["10.7.0.1"] == want
        db = {"namespace": ns, "pod": "db-0", "workload": {"kind": "StatefulSet", "name": "db"}, "node": "node-b"}
        wait_for(lambda: table.resolve("10.7.0.2") == db, what="the StatefulSet's pod")
        assert hooks.ADDRESSES["10.96.7.1"] == {"namespace": ns, "service": "sip"}
        assert "192.168.7.10" not in hooks.ADDRESSES                  # host network: the node's address

        # changed: db-0's labels now match the Service's selector
        core.patch_namespaced_pod("db-0", ns, {"metadata": {"labels": {"app": "sbc"}}})
        wait_for(lambda: hooks.ADDRESSES["10.7.0.2"].get("service") == "sip", what="db-0 selected by the Service")
        # the Service deleted: its address within its grace, the pods lose their service at once
        core.delete_namespaced_service("sip", ns)
        wait_for(lambda: "service" not in hooks.ADDRESSES["10.7.0.1"], what="the pods' service gone")
        assert hooks.ADDRESSES["10.96.7.1"] == {"namespace": ns, "service": "sip"}
        # a pod deleted: still resolves within the grace period, then not
        core.delete_namespaced_pod("db-0", ns)
        wait_for(lambda: any(h.ident.get("pod") == "db-0" for h in table.dying.values()), what="db-0 deleted")
        assert hooks.ADDRESSES["10.7.0.2"]["pod"] == "db-0"
        clock.t += 61
        table.expire()
        assert "10.7.0.2" not in hooks.ADDRESSES and "10.96.7.1" not in hooks.ADDRESSES
        assert hooks.ADDRESSES["10.7.0.1"]["pod"] == "sbc-7d4b9c6f5-x2x9z"
    finally:
        w.stop.set()


def test_address_reuse_within_and_after_the_grace(cluster):
    clock = Clock()
    core, table, w = _start(cluster, clock, grace_s=60)
    ns1, ns2 = _ns(), _ns()
    try:
        _pod(core, ns1, "old", ["10.8.0.9"], "node-a")
        wait_for(lambda: hooks.ADDRESSES.get("10.8.0.9", {}).get("pod") == "old", what="the old pod")
        core.delete_namespaced_pod("old", ns1)
        wait_for(lambda: table.dying, what="the old pod deleted")
        clock.t += 20
        _pod(core, ns2, "new", ["10.8.0.9"], "node-b")
        wait_for(lambda: any(h.ident.get("pod") == "new" for h in table.addrs.get("10.8.0.9", [])),
                 what="the new pod seen")
        assert hooks.ADDRESSES["10.8.0.9"] == {"namespace": ns1, "pod": "old", "node": "node-a"}   # within grace
        clock.t += 41
        table.expire()
        assert hooks.ADDRESSES["10.8.0.9"] == {"namespace": ns2, "pod": "new", "node": "node-b"}   # after it
    finally:
        w.stop.set()


def _gone_cluster(forbidden: int = 0):
    from emulator import Cluster, StampingEmulator, verb_of

    class Emu(StampingEmulator):
        """The next ``gone`` watches of pods answer HTTP 410 Gone; the first ``forbidden`` lists of pods 403
        (RBAC not there yet: the ClusterRoleBinding is created beside the DaemonSet)."""
        gone = 0
        denied = forbidden

        async def _handle(self, request):
            r = request.resource
            pods = r is not None and getattr(r, "plural", None) == "pods"
            if verb_of(request) == "watch" and pods and self.gone:
                self.gone -= 1
                self._record(request)
                raise KubernetesError(status=410, reason="Expired", message="too old resource version: 1 (99)")
            if verb_of(request) == "list" and pods and self.denied:
                self.denied -= 1
                self._record(request)
                raise KubernetesError(status=403, reason="Forbidden", message="pods is forbidden")
            return await super()._handle(request)
    return Cluster(Emu).start()


def test_errors_back_off_and_the_watch_recovers(caplog):
    caplog.set_level(logging.INFO, "otus.kube.identity")
    c = _gone_cluster(forbidden=3)
    try:
        core = client.CoreV1Api(c.client())
        _pod(core, "ns-x", "a", ["10.12.0.1"], "node-a")
        table = ki.IdentityTable()
        w = ki.IdentityWatch(core, table, backoff_s=0.1, max_backoff_s=0.4).start()
        t0 = time.monotonic()
        assert w.wait_synced(15), "no list after the 403s"
        assert time.monotonic() - t0 >= 0.1 + 0.2 + 0.4 - 0.2      # back-off 0.1, 0.2, 0.4 s (jitter 20%)
        assert table.counters["watch_errors"] == 3 and hooks.ADDRESSES["10.12.0.1"]["pod"] == "a"
        def watch_logs() -> list:
            return [r for r in caplog.records if "identity watch of pods" in r.getMessage()]
        # the recovery is logged by the watch thread just after the list it synced on: wait for it
        wait_for(lambda: any("works again" in r.getMessage() for r in watch_logs()), 5, what="the recovery logged")
        assert len([r for r in watch_logs() if "failed" in r.getMessage()]) == 1     # logged once, not per retry
        w.stop.set()
    finally:
        c.stop()


def test_410_gone_relists(tmp_path):
    c = _gone_cluster()
    try:
        core, table, w = _start(c)
        ns = _ns()
        _pod(core, ns, "a", ["10.9.0.1"], "node-a")
        wait_for(lambda: "10.9.0.1" in hooks.ADDRESSES, what="pod a")
        # a 410 as the HTTP status of the watch request (the version asked for is compacted away)
        lists = sum(1 for x in c.calls() if x.resource == "pods" and x.verb == "list")
        c.emulator.gone = 2
        # the current watch must end for the next one to be refused: a watch ERROR event, 410, as a real
        # server sends when the watch falls too far behind, put on the emulator's own event bus
        bus = next(v for k, v in c.emulator._buses.items() if getattr(k, "plural", None) == "pods")
        err = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                           "reason": "Expired", "message": "too old resource version"}}
        asyncio.run_coroutine_threadsafe(bus.put(err), c._loop).result(5)
        wait_for(lambda: table.counters["relists"] >= 3, what="relists after the ERROR event and two 410s")
        wait_for(lambda: sum(1 for x in c.calls() if x.resource == "pods" and x.verb == "list") >= lists + 3,
                 what="three more lists")
        # what changed meanwhile is there after the relist
        _pod(core, ns, "b", ["10.9.0.2"], "node-b")
        wait_for(lambda: hooks.ADDRESSES.get("10.9.0.2", {}).get("pod") == "b", what="pod b after the relists")
        assert hooks.ADDRESSES["10.9.0.1"]["pod"] == "a"
        w.stop.set()
    finally:
        c.stop()


def test_agent_identity_rbac_is_exactly_get_list_watch_of_pods_and_services(cluster):
    rules = [r for _, r in rbac.AGENT_IDENTITY_RULES]
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
    for res in ("pods", "services"):
        assert [v for v in verbs if rbac.allows(rules, v, "", res)] == ["get", "list", "watch"]
    for group, res, sub in (("", "secrets", None), ("", "configmaps", None), ("", "endpoints", None),
                            ("discovery.k8s.io", "endpointslices", None), ("apps", "replicasets", None),
                            ("", "pods", "log"), ("", "pods", "exec"), ("", "nodes", None)):
        assert not any(rbac.allows(rules, v, group, res, sub) for v in verbs), (group, res, sub)
    # the binding: node agents only, the task's own ServiceAccount, to that ClusterRole
    objs = render.agent_rbac("edge", "voip", "uid-1", sidecar=False)
    crb = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    assert len(crb) == 1 and crb[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                   "name": rbac.AGENT_IDENTITY_ROLE}
    assert crb[0]["subjects"] == [{"kind": "ServiceAccount", "name": "otus-edge", "namespace": "voip"}]
    assert not [o for o in render.agent_rbac("edge", "voip", "uid-1", sidecar=True)
                if o["kind"] == "ClusterRoleBinding"]
    # the operator may create it: it holds bind on exactly that ClusterRole
    op = rbac.rules(**rbac.release_names("otus"))
    assert rbac.allows(op, "bind", "rbac.authorization.k8s.io", "clusterroles", name=rbac.AGENT_IDENTITY_ROLE)
    assert not rbac.allows(op, "bind", "rbac.authorization.k8s.io", "clusterroles", name="cluster-admin")
    # every call a watch makes is allowed by those rules (the watch has a token of its own: other tests'
    # clients share the session's emulator)
    from kubernetes import config
    kubeconfig = os.path.join(cluster.dir, "identity-kubeconfig")
    cluster._write_kubeconfig(kubeconfig, "identity-agent")     # the token is the emulator's user name
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))
    w = ki.IdentityWatch(core, ki.IdentityTable()).start()
    assert w.wait_synced(10)
    wait_for(lambda: len([c for c in cluster.calls("identity-agent") if c.verb == "watch"]) >= 2, what="two watches")
    w.stop.set()
    calls = cluster.calls("identity-agent")
    assert {(c.verb, c.resource) for c in calls} == {("list", "pods"), ("watch", "pods"), ("list", "services"),
                                                       ("watch", "services")}
    assert all(rbac.allows(rules, c.verb, c.group, c.resource, c.subresource, c.name) and c.namespace is None
               for c in calls)


def _two_namespace_pods(core, n: int) -> tuple[str, str, dict, dict]:
    """A Deployment's pod (127.0.0.<n>) and a StatefulSet's (<n + 1>), in two new namespaces."""
    alpha, beta = _ns(), _ns()
    _pod(core, alpha, "uac-6c9f8d7b5-abcde", [f"127.0.0.{n}", f"fd00:{n}::1"], "node-a",
         ("ReplicaSet", "uac-6c9f8d7b5"), {"app": "uac", "pod-template-hash": "6c9f8d7b5"})
    _pod(core, beta, "uas-0", [f"127.0.0.{n + 1}", f"fd00:{n}::2"], "node-b", ("StatefulSet", "uas"), {"app": "uas"})
    a = {"namespace": alpha, "pod": "uac-6c9f8d7b5-abcde", "workload": {"kind": "Deployment", "name": "uac"},
         "node": "node-a"}
    b = {"namespace": beta, "pod": "uas-0", "workload": {"kind": "StatefulSet", "name": "uas"}, "node": "node-b"}
    return alpha, beta, a, b


def test_records_between_two_namespaces_carry_pod_workload_and_node(cluster, tmp_path):
    """Generated SIP between a Deployment's pod in one namespace and a StatefulSet's in another, through
    ``otus run --pcap`` in this process (the compiled lane where built, and the general path for TCP,
    fragments, IPv6): every record names both ends, and the capture point."""
    from otus_agent.cli.main import main
    from otus_agent.sim.callgen import WorkloadSpec, generate
    core, table, w = _start(cluster)
    try:
        alpha, beta, a, b = _two_namespace_pods(core, 21)
        wait_for(lambda: hooks.ADDRESSES.get("127.0.0.22") == b and hooks.ADDRESSES.get("fd00:21::1") == a,
                 what="both pods")
        hooks.set_capture({"agent": "otus-t-abc", "node": "node-a"})
        pcap = tmp_path / "w.pcap"
        with open(pcap, "wb") as f:
            generate(f, WorkloadSpec(calls=60, seed=3, tcp_ratio=0.3, large_invite_ratio=0.2, ipv6_ratio=0.3,
                                     ipv4_pair=("127.0.0.21", "127.0.0.22"), ipv6_pair=("fd00:21::1", "fd00:21::2")))
        out = tmp_path / "r.jsonl"
        assert main(["run", "--pcap", str(pcap), "--output", str(out)]) == 0
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        sip = [r for r in recs if r["type"] == "sip"]
        assert len(sip) > 300 and {r["transport"] for r in sip} == {"udp", "tcp"}
        assert any(":" in r["src_ip"] for r in sip) and any("." in r["src_ip"] for r in sip)
        by_ip = {"127.0.0.21": a, "fd00:21::1": a, "127.0.0.22": b, "fd00:21::2": b}
        for r in sip:
            assert r["src_k8s"] == by_ip[r["src_ip"]] and r["dst_k8s"] == by_ip[r["dst_ip"]], r
            assert r["capture"] == {"agent": "otus-t-abc", "node": "node-a"}
            assert list(r)[-3:] == ["capture", "src_k8s", "dst_k8s"]
        assert {r["src_k8s"]["namespace"] for r in sip} == {alpha, beta}
    finally:
        w.stop.set()


def test_otus_agent_node_mode_labels_captured_records(cluster, tmp_path):
    """``otus agent`` as the DaemonSet runs it: the watch in the agent, the capture in a forked task
    process that follows the table's snapshot; SIP on loopback between two pods' addresses."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a packet socket on loopback)")
    import socket
    core = client.CoreV1Api(cluster.client())     # the table is the agent's: only the API is the test's
    alpha, beta, a, b = _two_namespace_pods(core, 31)
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    out = tmp_path / "records.jsonl"
    (task_dir / "task.yaml").write_text(yaml.safe_dump({
        "id": "ident", "interfaces": ["lo"], "bpf_filter": "udp port 15070", "sip": {"ports": [15070]},
        "reporters": [{"type": "file", "path": str(out)}]}))
    env = {**os.environ, "OTUS_AGENT_NAME": "otus-ident-x1", "OTUS_NODE": "node-a", "OTUS_POD": "otus-ident-x1",
           "OTUS_MODE": "daemonset"}
    for k in ("OTUS_TASK", "OTUS_TASK_NAMESPACE", "OTUS_IDENTITY"):
        env.pop(k, None)
    proc = subprocess.Popen([otus_bin(), "agent", "--task-file", str(task_dir / "task.yaml"), "--kubeconfig",
                             cluster.kubeconfig, "--state-dir", str(tmp_path / "state"), "--poll-interval", "0.2",
                             "--metrics-listen", ""], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: b"127.0.0.32" in (tmp_path / "state" / "identity.tsv").read_bytes(), what="the snapshot")
        time.sleep(2.5)                      # the task process up and following the snapshot (checked each second)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.31", 0))
            for i in range(5):
                msg = (f"OPTIONS sip:uas@127.0.0.32:15070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.31;branch=z9hG4bK{i}\r\n"
                       f"From: <sip:uac@127.0.0.31>;tag=a{i}\r\nTo: <sip:uas@127.0.0.32>\r\nCall-ID: id-{i}@test\r\n"
                       f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
                s.sendto(msg.encode(), ("127.0.0.32", 15070))
        recs = wait_for(lambda: len(out.read_text().splitlines()) >= 5 and
                        [json.loads(x) for x in out.read_text().splitlines()], what="5 records")
        for r in recs:
            assert r["src_k8s"] == a and r["dst_k8s"] == b, r
            assert r["capture"] == {"agent": "otus-ident-x1", "node": "node-a"}
    finally:
        stop_proc(proc, timeout=15)
    err = proc.stderr.read().decode()
    assert "identity watch of pods and services on" in err, err[-2000:]


def test_thread_safety_smoke(cluster):
    """Lookups while the watch applies events: no exception, answers always whole identities."""
    core, table, w = _start(cluster)
    ns = _ns()
    stop = threading.Event()
    bad: list = []

    def read() -> None:
        while not stop.is_set():
            for ip in list(hooks.ADDRESSES):
                v = hooks.ADDRESSES.get(ip)
                if v is not None and "namespace" not in v:
                    bad.append(v)
    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(30):
            _pod(core, ns, f"p{i}", [f"10.11.0.{i}"], "node-a")
        wait_for(lambda: all(f"10.11.0.{i}" in hooks.ADDRESSES for i in range(30)), what="30 pods")
    finally:
        stop.set()
        t.join(5)
        w.stop.set()
    assert not bad


def test_otus_agent_takes_the_identity_settings_from_its_task_file(cluster, tmp_path):
    """The task's identity section (the CaptureTask's spec.identity, rendered by the operator) is what
    ``otus agent`` runs its watch with: a 1 s grace lets a deleted pod's address go within seconds (the
    default would hold it 60 s); then the file turns the watch off and the snapshot the capture processes
    follow empties, while the capture goes on."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a packet socket on loopback)")
    core = client.CoreV1Api(cluster.client())
    ns = _ns()
    _pod(core, ns, "keep", ["10.41.0.1"], "node-a")
    _pod(core, ns, "gone", ["10.41.0.2"], "node-a")
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    task = {"id": "ident-settings", "interfaces": ["lo"], "bpf_filter": "udp port 15071", "sip": {"ports": [15071]},
            "reporters": [{"type": "file", "path": str(tmp_path / "r.jsonl")}],
            "identity": {"grace_s": 1, "max_entries": 1000}}
    (task_dir / "task.yaml").write_text(yaml.safe_dump(task))
    env = {**os.environ, "OTUS_AGENT_NAME": "otus-ids-x1", "OTUS_NODE": "node-a", "OTUS_POD": "otus-ids-x1",
           "OTUS_MODE": "daemonset"}
    for k in ("OTUS_TASK", "OTUS_TASK_NAMESPACE"):
        env.pop(k, None)
    env["OTUS_IDENTITY"] = "false"          # no longer read: the task file decides
    snap = tmp_path / "state" / "identity.tsv"
    proc = subprocess.Popen([otus_bin(), "agent", "--task-file", str(task_dir / "task.yaml"), "--kubeconfig",
                             cluster.kubeconfig, "--state-dir", str(tmp_path / "state"), "--poll-interval", "0.2",
                             "--metrics-listen", ""], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: snap.exists() and b"10.41.0.2" in snap.read_bytes(), what="both pods in the snapshot")
        core.delete_namespaced_pod("gone", ns)
        t0 = time.monotonic()
        wait_for(lambda: b"10.41.0.2" not in snap.read_bytes(), 15, what="the deleted pod let go after 1 s")
        assert time.monotonic() - t0 < 15 and b"10.41.0.1" in snap.read_bytes()
        (task_dir / "task.yaml").write_text(yaml.safe_dump({**task, "identity": {"enabled": False}}))
        wait_for(lambda: snap.read_bytes() == b"", 15, what="the snapshot emptied once the watch is off")
        assert proc.poll() is None
    finally:
        stop_proc(proc, timeout=15)
    err = proc.stderr.read().decode()
    assert "identity watch of pods and services on (grace 1 s, at most 1000 addresses)" in err, err[-2000:]
    assert "identity watch of pods and services off" in err, err[-2000:]
    assert err.count("task started") == 1, err[-3000:]       # the identity change restarted no capture
