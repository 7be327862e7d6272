"""The identity table on its own (kube/identity.py): workloads, grace and reuse, bounds, the snapshot file,
and records carrying what it publishes.  The list+watch against the API emulator is tests/operator/test_identity.py."""
from __future__ import annotations

import orjson
import pytest

from otus_agent import identity as hooks
from otus_agent.kube import identity as ki

from ...support import Clock


@pytest.fixture(autouse=True)
def _clean():
    hooks.clear()
    yield
    hooks.clear()


def pod(name: str, ns: str, ip: str | list[str], uid: str | None = None, node: str = "n1", owner=None,
        labels: dict | None = None, host_network: bool = False, phase: str = "Running") -> dict:
    ips = [ip] if isinstance(ip, str) else ip
    meta: dict = {"name": name, "namespace": ns, "uid": uid or f"uid-{ns}-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True, "apiVersion": "apps/v1",
                                    "uid": "o"}]
    return {"metadata": meta, "spec": {"nodeName": node, "hostNetwork": host_network},
            "status": {"phase": phase, "podIP": ips[0] if ips else None, "podIPs": [{"ip": i} for i in ips]}}


def svc(name: str, ns: str, ips: list[str], selector: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ips[0] if ips else "None", "clusterIPs": ips, "selector": selector or {}}}


def test_workloads_resolve_through_the_pod_template_hash():
    rs = {"labels": {"pod-template-hash": "5d8f7c9b4"},
          "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f7c9b4", "controller": True}]}
    assert ki.workload_of(rs) == {"kind": "Deployment", "name": "web"}
    lone = {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "controller": True}]}
    assert ki.workload_of(lone) == {"kind": "ReplicaSet", "name": "web-abc"}      # no hash label: no Deployment
    other = {"labels": {"pod-template-hash": "zzz"}, **lone}
    assert ki.workload_of(other) == {"kind": "ReplicaSet", "name": "web-abc"}     # name does not end in it
    sts = {"ownerReferences": [{"kind": "Job", "name": "x", "controller": False},
                               {"kind": "StatefulSet", "name": "db", "controller": True}]}
    assert ki.workload_of(sts) == {"kind": "StatefulSet", "name": "db"}           # the controller, not the first
    assert ki.workload_of({}) is None


def test_pods_services_and_what_is_left_out():
    t = ki.IdentityTable(clock=Clock())
    t.upsert_service(svc("web", "alpha", ["10.96.0.10", "fd00:96::a"], {"app": "web"}))
    t.upsert_pod(pod("web-1", "alpha", ["10.1.0.5", "fd00:1::5"], owner=("ReplicaSet", "web-5d8f7c9b4"),
                     labels={"app": "web", "pod-template-hash": "5d8f7c9b4"}))
    t.upsert_pod(pod("proxy", "kube-system", "192.168.1.10", host_network=True))
    t.upsert_pod(pod("job-1", "alpha", "10.1.0.6", phase="Succeeded"))
    want = {"namespace": "alpha", "pod": "web-1", "workload": {"kind": "Deployment", "name": "web"}, "node": "n1",
            "service": "web"}
    assert t.resolve("10.1.0.5") == want and t.resolve("fd00:1::5") == want            # every family
    assert hooks.ADDRESSES["10.1.0.5"] == want and hooks.FRAGMENTS[b"10.1.0.5"] == orjson.dumps(want)
    assert t.resolve("10.96.0.10") == {"namespace": "alpha", "service": "web"} == t.resolve("fd00:96::a")
    assert t.resolve("192.168.1.10") is None        # host network: the node's address, not this pod's
    assert t.resolve("10.1.0.6") is None            # finished: its address is released
    # the Service's selector changes: the pod is no longer its
    t.upsert_service(svc("web", "alpha", ["10.96.0.10"], {"app": "other"}))
    assert "service" not in t.resolve("10.1.0.5")
    assert t.resolve("fd00:96::a") is None          # an address a live object stops listing goes at once


def test_reused_address_resolves_to_the_old_pod_within_the_grace_and_to_the_new_after():
    clock = Clock()
    t = ki.IdentityTable(grace_s=60, clock=clock)
    t.upsert_pod(pod("old", "alpha", "10.1.0.7", uid="u-old"))
    t.delete_pod(pod("old", "alpha", "10.1.0.7", uid="u-old"))
    clock.t += 30
    t.upsert_pod(pod("new", "beta", "10.1.0.7", uid="u-new"))
    assert t.resolve("10.1.0.7")["pod"] == "old"            # within the old pod's grace: late packets are its
    assert hooks.ADDRESSES["10.1.0.7"]["pod"] == "old"
    clock.t += 31
    t.expire()
    assert t.resolve("10.1.0.7")["pod"] == "new" == hooks.ADDRESSES["10.1.0.7"]["pod"]
    t.delete_pod(pod("new", "beta", "10.1.0.7", uid="u-new"))
    clock.t += 61
    t.expire()
    assert t.resolve("10.1.0.7") is None and "10.1.0.7" not in hooks.ADDRESSES and not t.holders


def test_relist_deletes_what_it_no_longer_lists_after_the_grace():
    clock = Clock()
    t = ki.IdentityTable(grace_s=10, clock=clock)
    t.replace("pod", [pod("a", "x", "10.0.0.1"), pod("b", "x", "10.0.0.2")])
    t.replace("pod", [pod("b", "x", "10.0.0.2")])
    assert t.resolve("10.0.0.1")["pod"] == "a"
    clock.t += 11
    assert t.resolve("10.0.0.1") is None and t.resolve("10.0.0.2")["pod"] == "b"


def test_the_table_is_bounded_and_counts_evictions():
    clock = Clock()
    t = ki.IdentityTable(grace_s=60, max_entries=16, clock=clock)
    for i in range(16):
        t.upsert_pod(pod(f"p{i}", "x", f"10.0.0.{i}"))
    t.delete_pod(pod("p3", "x", "10.0.0.3"))
    t.upsert_pod(pod("q", "x", "10.0.1.1"))            # full: the deleted pod's address goes first
    assert len(t) == 16 and t.counters["evictions"] == 1 and t.resolve("10.0.0.3") is None
    t.upsert_pod(pod("r", "x", "10.0.1.2"))            # then the oldest
    assert len(t) == 16 and t.counters["evictions"] == 2 and t.resolve("10.0.0.0") is None
    assert "10.0.0.0" not in hooks.ADDRESSES and t.resolve("10.0.1.2")["pod"] == "r"
    names = {m.name: m for m in ki.IdentityCollector(t).collect()}
    assert names["otus_identity_evictions"].samples[0].value == 2
    assert names["otus_identity_addresses"].samples[0].value == 16


def test_snapshot_file_carries_the_answers_to_another_process(tmp_path):
    clock = Clock()
    path = str(tmp_path / "identity.tsv")
    sink = ki.FileSink(path, every_s=1.0, clock=clock)
    t = ki.IdentityTable(sink=sink, clock=clock)
    t.upsert_pod(pod("a", "x", "10.0.0.1"))
    assert sink.flush() and not sink.flush()           # at most once per every_s
    hooks.set_capture({"agent": "ag", "node": "n1"})
    assert ki.load_snapshot(path) == 1 and hooks.ADDRESSES["10.0.0.1"]["pod"] == "a"
    t.upsert_pod(pod("b", "x", "10.0.0.2"))
    t.delete_pod(pod("a", "x", "10.0.0.1"))
    clock.t += t.grace_s + 1
    t.expire()
    assert sink.flush()
    assert ki.load_snapshot(path) == 2
    assert set(hooks.ADDRESSES) == {"10.0.0.2"} and hooks.FRAGMENTS[hooks.CAPTURE_KEY]   # the capture point stays


def test_capture_point_from_the_downward_api():
    assert ki.capture_point({}) is None
    node = {"OTUS_NODE": "n1", "OTUS_AGENT_NAME": "otus-t-x1", "OTUS_POD": "otus-t-x1", "OTUS_MODE": "daemonset"}
    assert ki.capture_point(node) == {"agent": "otus-t-x1", "node": "n1"}
    side = {"OTUS_NODE": "n1", "OTUS_AGENT_NAME": "web-1", "OTUS_POD": "web-1", "OTUS_POD_NAMESPACE": "alpha",
            "OTUS_MODE": "sidecar"}
    assert ki.capture_point(side) == {"agent": "web-1", "node": "n1", "pod": "web-1", "namespace": "alpha"}


def test_sidecar_mode_knows_its_own_pod_and_watches_nothing(tmp_path):
    from otus_agent.kube.main import IdentityService, start_capture_point
    from otus_spec import IdentityOptions
    env = {"OTUS_MODE": "sidecar", "OTUS_NODE": "n1", "OTUS_AGENT_NAME": "web-1", "OTUS_POD": "web-1",
           "OTUS_POD_NAMESPACE": "alpha", "OTUS_POD_IPS": "10.1.0.5,fd00:1::5", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    start_capture_point(env)
    ids = IdentityService(None, str(tmp_path), env)
    ids.apply(IdentityOptions())
    assert ids.table is None and ids.watch is None                     # no table, no watch, no API call
    me = {"namespace": "alpha", "pod": "web-1", "node": "n1"}
    assert hooks.ADDRESSES == {"10.1.0.5": me, "fd00:1::5": me}
    assert hooks.FRAGMENTS[b"10.1.0.5"] == orjson.dumps(me)
    assert hooks.CAPTURE["capture"] == {"agent": "web-1", "node": "n1", "pod": "web-1", "namespace": "alpha"}
    # outside a cluster: nothing at all, records unchanged
    hooks.clear()
    start_capture_point({})
    out = IdentityService(None, str(tmp_path), {})
    out.apply(IdentityOptions())
    assert out.table is None and not hooks.ADDRESSES and not hooks.FRAGMENTS and not hooks.CAPTURE
    # the default follows the mode; the task's identity.enabled wins over it
    node = {**env, "OTUS_MODE": "daemonset"}
    assert IdentityService(None, str(tmp_path), node).wanted(IdentityOptions())
    assert not IdentityService(None, str(tmp_path), node).wanted(IdentityOptions(enabled=False))
    assert not IdentityService(None, str(tmp_path), {}).wanted(IdentityOptions())
    assert IdentityService(None, str(tmp_path), {}).wanted(IdentityOptions(enabled=True))


def test_new_settings_apply_to_a_running_table():
    """A shorter grace expires at once what it no longer covers; a smaller bound evicts down to it, counted;
    clear() lets every address go."""
    clock = Clock()
    t = ki.IdentityTable(grace_s=60, max_entries=100, clock=clock)
    for i in range(10):
        t.upsert_pod(pod(f"p{i}", "x", f"10.0.0.{i}"))
    t.delete_pod(pod("p0", "x", "10.0.0.0"))
    clock.t += 5
    t.configure(grace_s=30, max_entries=100)
    assert hooks.ADDRESSES["10.0.0.0"]["pod"] == "p0"                  # 5 s after: within 30 s
    t.configure(grace_s=2, max_entries=100)
    assert "10.0.0.0" not in hooks.ADDRESSES and t.grace_s == 2       # 5 s after: past 2 s
    t.configure(grace_s=2, max_entries=16)
    assert len(t) == 9 and t.counters["evictions"] == 0
    for i in range(10, 20):
        t.upsert_pod(pod(f"p{i}", "x", f"10.0.0.{i}"))
    assert len(t) == 16 and t.counters["evictions"] == 3
    t.max_entries = 100
    for i in range(20, 30):
        t.upsert_pod(pod(f"p{i}", "x", f"10.0.0.{i}"))
    t.configure(grace_s=2, max_entries=20)
    assert len(t) == len(hooks.ADDRESSES) == 20 and t.counters["evictions"] == 3 + 6
    t.clear()
    assert len(t) == 0 and not hooks.ADDRESSES and t.resolve("10.0.0.25") is None


def test_lane_and_general_path_write_the_same_identity_bytes(tmp_path):
    """With identities published, the compiled lane's records (pre-serialised fragments) are byte for
    byte the general path's (orjson of the dicts), key order included."""
    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.reassembly.datagrams import DatagramStage
    from otus_agent.reporters.sink import RecordSink
    from otus_agent.sim.callgen import WorkloadSpec, generate
    from otus_agent.sip.framing import LANE_COMPILED, SipConfig, SipStage
    if not LANE_COMPILED:
        pytest.skip("the lane exists only in the compiled build")
    pcap = tmp_path / "w.pcap"
    with open(pcap, "wb") as f:
        generate(f, WorkloadSpec(calls=80, seed=9, tcp_ratio=0.2, large_invite_ratio=0.2, ipv6_ratio=0.3,
                                 ipv4_pair=("10.3.0.1", "10.3.0.2"), ipv6_pair=("fd00:3::1", "fd00:3::2")))
    t = ki.IdentityTable()
    t.upsert_pod(pod("uac-1", "alpha", ["10.3.0.1", "fd00:3::1"], owner=("StatefulSet", "uac")))
    t.upsert_service(svc("uas", "beta", ["10.3.0.2", "fd00:3::2"]))
    hooks.set_capture({"agent": "otus-x", "node": "n1"})

    def run(lane: bool) -> bytes:
        out = bytearray()
        sink = RecordSink(out.extend)
        st = SipStage(SipConfig(extra={"task": "t", "agent": "a"}), sink.emit, None, sink.emit_block if lane else None)
        with open_capture(pcap) as r:
            DatagramStage(sink=st.on_datagram, lane=st.run_lane if st.lane is not None else None).run(r.batches())
        sink.flush()
        st.finish()
        assert (st.lane is not None) == lane
        return bytes(out)
    general, fast = run(False), run(True)
    assert general == fast
    recs = [orjson.loads(x) for x in fast.splitlines()]
    assert all(list(r)[-5:] == ["task", "agent", "capture", "src_k8s", "dst_k8s"] for r in recs if r["type"] == "sip")
