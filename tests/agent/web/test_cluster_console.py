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




def _console(broker_address: str, topic: str, log_path, *flags: str, from_beginning: bool = True):
    port = free_port()
    log = open(log_path, "wb")
    cmd = [otus_bin(), "console", "--kafka-brokers", broker_address, "--topic", topic, "--listen",
           f"127.0.0.1:{port}", *flags] + (["--from-beginning"] if from_beginning else [])
    return subprocess.Popen(cmd, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


def test_kafka_settings_reach_the_consumer(broker, tmp_path):  # noqa: F811
    """The --kafka-* flags (the kafka reporter's KafkaAuth) configure the console's consumer: records still
    arrive through it, and the settings it logs are the ones given (no SASL here: see the next test)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": broker.address})
    p.produce("otus-auth", key=b"two-agents@x", value=rec("a", 1_800_000_000_000_000_000, "10.0.0.1", "10.0.0.2",
                                                         method="INVITE", cseq_method="INVITE", via_branch="b1"))
    assert p.flush(30) == 0
    proc, url = _console(broker.address, "otus-auth", tmp_path / "c.log", "--kafka-security-protocol", "PLAINTEXT",
                         "--kafka-option", "client.id=otus-console-test", "--kafka-option", "fetch.wait.max.ms=50")
    try:
        wait_for(lambda: _up(url) and get(url + "/api/v1/calls")[1], 60, what="the call through the configured consumer")
    finally:
        proc.terminate()
        proc.wait(15)
    out = (tmp_path / "c.log").read_text()
    assert "'security.protocol': 'PLAINTEXT'" in out and "'client.id': 'otus-console-test'" in out, out[-2000:]


def test_sasl_scram_is_spoken_and_the_password_never_shown(tmp_path):
    """Against tansu requiring authentication: the console authenticates with SCRAM-SHA-512 as the flags say,
    its password from a file.  This tansu build keeps users only in storage it cannot share here (its memory
    engine; creating a user needs an authenticated client first), so no login can succeed: the test shows
    the console speaks SASL SCRAM with the configured user (the broker answers "unknown-user") and never
    prints the password, while a console without SASL is refused by the same broker.  A successful SASL
    session is not exercised."""
    from ...integration.test_kafka import tansu_binary
    port = free_port()
    addr = f"127.0.0.1:{port}"
    broker = subprocess.Popen([tansu_binary(), "broker", "--listener-url", f"tcp://{addr}", "--advertised-listener-url",
                               f"tcp://{addr}", "--storage-engine", "memory://tansu/", "--authentication"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secret = "pw-" + "7f3a9c1e55d04b2b"
    (tmp_path / "password").write_text(secret + "\n")
    procs = []
    try:
        wait_for(lambda: _listening(port), 20, what="tansu")
        sasl, _ = _console(addr, "t", tmp_path / "sasl.log", "--kafka-security-protocol", "SASL_PLAINTEXT",
                           "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "otus-console",
                           "--kafka-password-file", str(tmp_path / "password"))
        procs.append(sasl)
        wait_for(lambda: "SASL SCRAM authentication failed" in (tmp_path / "sasl.log").read_text(), 30,
                 what="a SCRAM exchange with the broker")
    finally:
        for p in procs:
            p.terminate()
            p.wait(15)
        broker.terminate()
        broker.wait(10)
    out = (tmp_path / "sasl.log").read_text()
    assert "unknown-user" in out and "'sasl.mechanism': 'SCRAM-SHA-512'" in out and "'sasl.username': 'otus-console'" \
        in out, out[-2000:]
    assert "'sasl.password': '<redacted>'" in out and secret not in out


@pytest.mark.parametrize("flags,needle", [
    (["--kafka-option", "sasl.password=hunter2"], "option 'sasl.password': put secrets in an environment variable"),
    (["--kafka-option", "nonsense"], "--kafka-option: expected KEY=VALUE"),
    (["--kafka-password-file", "/nonexistent/pw"], "kafka password file /nonexistent/pw: No such file"),
    (["--kafka-password-file", "/x", "--kafka-password-env", "X"], "not both"),
    (["--kafka-option", "no.such.setting=1"], "kafka: "),
])
def test_bad_kafka_settings_are_clear_errors_without_the_secret(flags, needle):
    r = subprocess.run([otus_bin(), "console", "--kafka-brokers", "127.0.0.1:1", "--topic", "t", "--listen",
                        "127.0.0.1:0", *flags], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and needle in r.stderr, r.stderr[-2000:]
    assert "hunter2" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def _listening(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False
