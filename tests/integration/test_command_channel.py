"""The Kafka command channel against a real broker: valid, invalid, hostile and unauthorised commands."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ..conftest import otus_bin
from .test_kafka import Broker, free_port

pytestmark = pytest.mark.kafka


def reply_for(consumer, rid: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            r = json.loads(m.value())
            if r.get("request_id") == rid:
                return r
    raise AssertionError(f"no reply to {rid}")


def test_commands_over_kafka(tmp_path):
    from confluent_kafka import Consumer, Producer, TopicPartition
    b = Broker(free_port())
    b.start()
    sock = tmp_path / "otus.sock"
    (tmp_path / "otus.yaml").write_text(
        f"otus:\n  control:\n    socket: {sock}\n  metrics:\n    enabled: false\n  state_dir: {tmp_path / 'state'}\n"
        f"  kafka:\n    brokers: [\"{b.address}\"]\n  command_channel:\n    enabled: true\n    kafka:\n"
        f"      topic: cmds\n      reply_topic: replies\n")
    env = {**os.environ, "OTUS_COMMAND_TOKEN": "t0ken-xyz"}
    d = subprocess.Popen([otus_bin(), "daemon", "-c", str(tmp_path / "otus.yaml")], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "d.log", "wb"))
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        p = Producer({"bootstrap.servers": b.address})
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": b.address})
        admin.create_topics([NewTopic("replies", num_partitions=3, replication_factor=1)])["replies"].result(10)
        c = Consumer({"bootstrap.servers": b.address, "group.id": "t", "auto.offset.reset": "earliest"})
        c.assign([TopicPartition("replies", part, 0) for part in range(3)])  # replies are keyed: any partition
        # the channel starts from the end of the topic: wait until it answers a ping
        deadline = time.time() + 30
        while True:
            p.produce("cmds", json.dumps({"request_id": "ping", "token": "t0ken-xyz", "cmd": "status"}).encode())
            p.flush(5)
            try:
                r = reply_for(c, "ping", timeout=2)
                break
            except AssertionError:
                assert time.time() < deadline, (tmp_path / "d.log").read_text()[-2000:]
        assert r["ok"] and r["result"]["command_channel"] is not None

        def send(rid: str, body: dict | bytes) -> dict:
            payload = body if isinstance(body, bytes) else json.dumps({"request_id": rid, **body}).encode()
            p.produce("cmds", payload)
            p.flush(5)
            return reply_for(c, rid)
        spec = {"id": "via-kafka", "interface": "lo", "bpf_filter": "udp port 5060"}
        r = send("c1", {"token": "t0ken-xyz", "cmd": "task.create", "spec": spec})
        assert r["ok"] and r["result"]["id"] == "via-kafka"
        r = send("c2", {"token": "t0ken-xyz", "cmd": "task.list"})
        assert [t["id"] for t in r["result"]] == ["via-kafka"]
        # unauthorised: wrong and missing token change nothing
        r = send("c3", {"token": "guess", "cmd": "task.delete", "id": "via-kafka"})
        assert not r["ok"] and r["error"] == "unauthorised"
        r = send("c4", {"cmd": "stop"})
        assert not r["ok"] and r["error"] == "unauthorised"
        # invalid commands are answered with the reason
        r = send("c5", {"token": "t0ken-xyz", "cmd": "task.create", "spec": {"id": "Bad Id", "interface": "lo"}})
        assert not r["ok"] and "id: must be lower-case" in r["error"]
        r = send("c6", {"token": "t0ken-xyz", "cmd": "rm -rf"})
        assert not r["ok"] and "cmd" in r["error"]
        # hostile: not JSON at all, and JSON nested 200,000 deep; answered, and the consumer goes on
        p.produce("cmds", b"\xff\xfe garbage")
        p.produce("cmds", b"[" * 200000 + b"]" * 200000)
        p.flush(5)
        r = send("c7", {"token": "t0ken-xyz", "cmd": "task.delete", "id": "via-kafka"})
        assert r["ok"]
        r = send("c8", {"token": "t0ken-xyz", "cmd": "task.list"})
        assert r["result"] == []
        st = json.loads(subprocess.run([otus_bin(), "status", "--socket", str(sock), "-o", "json"],
                                       capture_output=True, text=True, timeout=30).stdout)
        assert st["command_channel"]["commands_rejected"] == 4  # 2 unauthorised, garbage, nested
        c.close()
    finally:
        d.terminate()
        d.wait(30)
        b.stop()
