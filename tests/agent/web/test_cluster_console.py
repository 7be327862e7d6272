"""`otus console` against a real Kafka-protocol broker (tansu): one call captured by two agents (the
caller's and the callee's) is one call with both capture points, its messages from both in capture
order; tasks are read-only there."""
from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from ...conftest import otus_bin
from ...integration.test_kafka import broker  # noqa: F401  (the fixture)
from .conftest import free_port, wait_for

pytestmark = pytest.mark.kafka


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rec(agent: str, ts: int, src: str, dst: str, **kw) -> bytes:
    return json.dumps({"v": 1, "type": "sip", "ts": ts, "src_ip": src, "src_port": 5060, "dst_ip": dst,
                       "dst_port": 5060, "transport": "udp", "call_id": "two-agents@x", "cseq_num": 1,
                       "from_user": "alice", "to_user": "bob", "agent": agent, "task": "t", **kw}).encode()


def test_one_call_two_agents(broker, tmp_path):  # noqa: F811
    from confluent_kafka import Producer
    topic = "otus-cluster"
    t0 = 1_800_000_000_000_000_000
    # the caller's sidecar sees alice -> proxy; the callee's sidecar sees proxy -> bob
    recs = [rec("caller-pod", t0, "10.0.0.1", "10.0.0.9", method="INVITE", cseq_method="INVITE", via_branch="b1"),
            rec("callee-pod", t0 + 5_000_000, "10.0.0.9", "10.0.0.2", method="INVITE", cseq_method="INVITE",
                via_branch="b2"),
            rec("callee-pod", t0 + 9_000_000, "10.0.0.2", "10.0.0.9", status_code=200, reason_phrase="OK",
                cseq_method="INVITE", via_branch="b2"),
            rec("caller-pod", t0 + 12_000_000, "10.0.0.9", "10.0.0.1", status_code=200, reason_phrase="OK",
                cseq_method="INVITE", via_branch="b1")]
    p = Producer({"bootstrap.servers": broker.address})
    for r in recs[::-1]:          # arrival order is not capture order: the ladder sorts by capture time
        p.produce(topic, key=b"two-agents@x", value=r)
    assert p.flush(30) == 0
    port = free_port()
    log = open(tmp_path / "console.log", "wb")
    proc = subprocess.Popen([otus_bin(), "console", "--kafka-brokers", broker.address, "--topic", topic,
                             "--from-beginning", "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url) and get(url + "/api/v1/calls")[1], 60, what="the call from Kafka")
        calls = get(url + "/api/v1/calls")[1]
        assert len(calls) == 1 and sorted(calls[0]["agents"]) == ["callee-pod", "caller-pod"]
        msgs = get(url + "/api/v1/messages?call_id=two-agents%40x")[1]["messages"]
        assert [(m["agent"], m["src"], m["dst"], m["label"]) for m in msgs] == [
            ("caller-pod", "10.0.0.1:5060", "10.0.0.9:5060", "INVITE"),
            ("callee-pod", "10.0.0.9:5060", "10.0.0.2:5060", "INVITE"),
            ("callee-pod", "10.0.0.2:5060", "10.0.0.9:5060", "200 OK"),
            ("caller-pod", "10.0.0.9:5060", "10.0.0.1:5060", "200 OK")]
        req = urllib.request.Request(url + "/api/v1/tasks/t", method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a read-only console accepted a delete")
        except urllib.error.HTTPError as e:
            assert e.code == 405 and "read-only" in json.loads(e.read())["error"]
        assert get(url + "/api/v1/tasks") == (200, [])
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0, (tmp_path / "console.log").read_text()[-2000:]


def _up(url: str) -> bool:
    try:
        return get(url + "/api/v1/status")[0] == 200
    except OSError:
        return False


