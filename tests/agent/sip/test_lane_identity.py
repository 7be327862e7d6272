"""The lane's identity keys come from its caches of otus_agent/identity.py's FRAGMENTS (one answer per IPv4
address, direct-mapped over 4,096 slots, and the capture point's), emptied when identity.GENERATION moves:
records stay those of the general path, also across changes of the table and with more addresses than
slots."""
from __future__ import annotations

import orjson
import pytest

from otus_agent import identity as hooks
from otus_agent.capture.pcapfile import open_capture
from otus_agent.kube import identity as ki
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.reporters.sink import RecordSink
from otus_agent.sim import packets as P
from otus_agent.sip.framing import LANE_COMPILED, SipConfig, SipStage

from ...conftest import pcap_bytes

pytestmark = pytest.mark.skipif(not LANE_COMPILED, reason="the lane exists only in the compiled build")

N = 5000      # addresses on each side: more than the lane's 4,096 slots


@pytest.fixture(autouse=True)
def _clean():
    hooks.clear()
    yield
    hooks.clear()


def _v4(net: int, i: int) -> bytes:
    return bytes((10, net, i >> 8, i & 255))


def frames(n: int, seed: int) -> list[bytes]:
    """One OPTIONS per address pair (10.1.x.y -> 10.2.x.y), then the same pairs again in another order
    (the second look-up of each address is the cache's)."""
    out = []
    order = list(range(n)) + [(i * 7919 + seed) % n for i in range(n)]
    for j, i in enumerate(order):
        msg = (f"OPTIONS sip:b{i}@10.2.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.1;branch=z9hG4bK{seed}x{j}\r\n"
               f"From: <sip:a{i}@10.1.0.1>;tag=t{j}\r\nTo: <sip:b{i}@10.2.0.1>\r\nCall-ID: c{seed}-{j}\r\n"
               f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        out.append(P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(_v4(1, i), _v4(2, i), 17,
                                                                    P.udp(_v4(1, i), _v4(2, i), 5060, 5060, msg))))
    return out


def pod(name: str, ip: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]}}


class Stage:
    """A SIP stage (with the lane or without) kept across runs: each run's records, flushed."""

    def __init__(self, lane: bool):
        self.lane, self.out = lane, bytearray()
        self.sink = RecordSink(self.out.extend)
        self.st = SipStage(SipConfig(), self.sink.emit, None, self.sink.emit_block if lane else None)
        assert (self.st.lane is not None) == lane

    def run(self, path) -> bytes:
        with open_capture(str(path)) as r:
            DatagramStage(sink=self.st.on_datagram, lane=self.st.run_lane if self.lane else None).run(r.batches())
        self.sink.flush()
        data = bytes(self.out)
        self.out.clear()
        return data


def test_lane_identity_follows_the_table(tmp_path):
    first, second = tmp_path / "1.pcap", tmp_path / "2.pcap"
    first.write_bytes(pcap_bytes(frames(N, 1)))
    second.write_bytes(pcap_bytes(frames(N, 2), ts0=2_000_000_000_000_000_000))
    table = ki.IdentityTable(grace_s=0)
    for i in range(0, N, 3):                       # a third of the sources and of the destinations are pods
        table.upsert_pod(pod(f"a{i}", f"10.1.{i >> 8}.{i & 255}"))
        table.upsert_pod(pod(f"b{i}", f"10.2.{i >> 8}.{i & 255}"))
    gen = hooks.GENERATION[0]
    hooks.set_capture({"agent": "a1", "node": "n1"})
    assert hooks.GENERATION[0] > gen               # every writer of FRAGMENTS moves the count
    fast, slow = Stage(True), Stage(False)
    a, b = fast.run(first), slow.run(first)
    assert a == b
    recs = [orjson.loads(x) for x in a.splitlines()]
    assert len(recs) == 2 * N and fast.st.summary()["fast_path"] == 2 * N
    for r in recs:
        i = int(r["src_ip"].rsplit(".", 2)[-2]) * 256 + int(r["src_ip"].rsplit(".", 1)[-1])
        assert ("src_k8s" in r) == (i % 3 == 0) and ("dst_k8s" in r) == (i % 3 == 0), r
        assert r["capture"] == {"agent": "a1", "node": "n1"}
    # the table changes under the same lane: pods gone, others at new addresses, an address reused, a new
    # capture point; the records of the next batch follow it
    gen = hooks.GENERATION[0]
    for i in range(0, N, 6):
        table.delete_pod(pod(f"a{i}", f"10.1.{i >> 8}.{i & 255}"))
    table.upsert_pod(pod("reused", "10.2.0.0"))
    table.delete_pod(pod("b0", "10.2.0.0"))
    for i in range(1, N, 5):
        table.upsert_pod(pod(f"n{i}", f"10.1.{i >> 8}.{i & 255}"))
    table.expire()
    hooks.set_capture({"agent": "a2", "node": "n2"})
    assert hooks.GENERATION[0] > gen
    a, b = fast.run(second), slow.run(second)
    assert a == b
    recs = [orjson.loads(x) for x in a.splitlines()]
    assert {r["capture"]["agent"] for r in recs} == {"a2"}
    assert any(r.get("src_k8s", {}).get("pod", "").startswith("n") for r in recs)
    assert [r["dst_k8s"]["pod"] for r in recs if r["dst_ip"] == "10.2.0.0"] == ["reused", "reused"]
    assert not any(r.get("src_k8s", {}).get("pod") == "a0" for r in recs)
    # outside a cluster again: no identity keys at all
    hooks.clear()
    a = fast.run(second)
    assert b"k8s" not in a and b'"capture"' not in a and a == slow.run(second)
