"""The daemon end to end, as root in network namespaces: two tasks on two veth pairs,
records and metrics, delete, restart and restore; bad requests; a bounded soak."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ..conftest import otus_bin
from ..netns import require_root_and, sh, stop, veth_pair
from ..support import wait_for

pytestmark = pytest.mark.netns

MSG = ("OPTIONS sip:a@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bK{i}\r\n"
       "From: <sip:b@{src}>;tag={i}\r\nTo: <sip:a@{dst}>\r\nCall-ID: {tag}-{i}\r\nCSeq: 1 OPTIONS\r\n"
       "Content-Length: 0\r\n\r\n")


def send(p, tag: str, n: int) -> None:
    """n OPTIONS from namespace a to b's address (no peer needed: the capture sees them)."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"m={MSG!r}\n"
            f"[s.sendto(m.format(dst='{p.ip_b}',src='{p.ip_a}',i=i,tag='{tag}').encode(),('{p.ip_b}',5060)) "
            f"for i in range({n})]")
    p.run(p.ns_a, "python3", "-c", code)


def otus(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([otus_bin(), *args, "--socket", sock, "-o", "json"], capture_output=True, text=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


class DaemonRun:
    """The daemon in namespace b of the first pair; the second pair's b end is moved there too."""

    def __init__(self, tmp, ns: str, port: int):
        self.tmp, self.ns, self.port = tmp, ns, port
        self.sock = str(tmp / "otus.sock")
        (tmp / "otus.yaml").write_text(
            f"otus:\n  control:\n    socket: {self.sock}\n  metrics:\n    listen: \"127.0.0.1:{port}\"\n"
            f"  log:\n    level: info\n    format: json\n  state_dir: {tmp / 'state'}\n")
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, otus_bin(), "daemon", "-c",
                                      str(self.tmp / "otus.yaml")], stdout=subprocess.DEVNULL,
                                     stderr=open(self.tmp / "daemon.log", "ab"))
        for _ in range(100):
            if os.path.exists(self.sock) and otus(self.sock, "status", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("daemon did not start: " + (self.tmp / "daemon.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                stop(self.proc)
            self.proc = None

    def metrics(self) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns, "python3", "-c",
                            f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{self.port}/metrics')"
                            ".read().decode())"], capture_output=True, text=True, timeout=30)
        return r.stdout


def task_file(tmp, tid: str, iface: str, out) -> str:
    path = tmp / f"{tid}.yaml"
    path.write_text(f"id: {tid}\ninterface: {iface}\nparsers:\n  - sip\nbpf_filter: \"udp port 5060\"\n"
                    f"reporters:\n  - type: file\n    path: {out}\n")
    return str(path)


def test_two_tasks_metrics_delete_restart_restore(tmp_path):
    require_root_and()
    with veth_pair("dm1", subnet=82) as p1, veth_pair("dm2", subnet=83) as p2:
        # both capture ends in one namespace: the daemon's
        sh("ip", "-n", p2.ns_b, "link", "set", p2.if_b, "netns", p1.ns_b)
        sh("ip", "-n", p1.ns_b, "addr", "add", f"{p2.ip_b}/24", "dev", p2.if_b)
        sh("ip", "-n", p1.ns_b, "link", "set", p2.if_b, "up")
        sh("ip", "-n", p1.ns_b, "link", "set", "lo", "up")
        d = DaemonRun(tmp_path, p1.ns_b, 19300 + os.getpid() % 500)
        d.start()
        try:
            out1, out2 = tmp_path / "t1.jsonl", tmp_path / "t2.jsonl"
            otus(d.sock, "task", "create", "-f", task_file(tmp_path, "one", p1.if_b, out1))
            otus(d.sock, "task", "create", "-f", task_file(tmp_path, "two", p2.if_b, out2))
            time.sleep(0.5)
            send(p1, "first", 20)
            send(p2, "second", 30)
            wait_for(lambda: out1.exists() and len(out1.read_text().splitlines()) == 20)
            wait_for(lambda: out2.exists() and len(out2.read_text().splitlines()) == 30)
            recs1 = [json.loads(x) for x in out1.read_text().splitlines()]
            assert {r["task"] for r in recs1} == {"one"} and all(r["call_id"].startswith("first-") for r in recs1)
            want = ('otus_sip_requests_total{method="OPTIONS",task="two"} 30.0',
                    'otus_sip_requests_total{method="OPTIONS",task="one"} 20.0')
            m = wait_for(lambda: (lambda t: t if all(w in t for w in want) else None)(d.metrics()))
            assert 'otus_task_status{status="running",task="one"} 1.0' in m
            assert 'otus_pipeline_latency_seconds_count{stage="batch",task="one"}' in m
            tasks = json.loads(otus(d.sock, "task", "list").stdout)
            assert {t["id"]: t["sip_messages"] for t in tasks} == {"one": 20, "two": 30}
            otus(d.sock, "task", "delete", "one")
            assert [t["id"] for t in json.loads(otus(d.sock, "task", "list").stdout)] == ["two"]
            d.stop()
            d.start()  # "two" comes back from the state directory
            tasks = json.loads(otus(d.sock, "task", "list").stdout)
            assert [(t["id"], t["status"]) for t in tasks] == [("two", "running")]
            time.sleep(0.5)
            send(p2, "again", 5)
            wait_for(lambda: len(out2.read_text().splitlines()) == 35)
        finally:
            d.stop()


def test_bad_requests_change_nothing(tmp_path):
    require_root_and("setpriv")
    with veth_pair("dm3", subnet=84) as p:
        d = DaemonRun(tmp_path, p.ns_b, 19900 + os.getpid() % 90)
        d.start()
        try:
            good = task_file(tmp_path, "only", p.if_b, tmp_path / "o.jsonl")
            otus(d.sock, "task", "create", "-f", good)
            cases = [
                (["task", "create", "-f", good], "already exists"),
                (["task", "create", "-f", task_file(tmp_path, "ghost", "nosuchif9", tmp_path / "g.jsonl")],
                 "no such interface: nosuchif9"),
                (["task", "delete", "nope"], "no such task: nope"),
                (["task", "status", "nope"], "no such task: nope"),
            ]
            bad = tmp_path / "bad.yaml"
            bad.write_text("id: x\ninterface: lo\nworkers: zero\n")
            cases.append((["task", "create", "-f", str(bad)], "bad.yaml: workers: Input should be a valid integer"))
            for args, needle in cases:
                r = otus(d.sock, *args, check=False)
                assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert [t["id"] for t in json.loads(otus(d.sock, "task", "list").stdout)] == ["only"]
            # a peer that is neither root nor the daemon's user nor in its group is refused
            os.chmod(tmp_path, 0o755)
            os.chmod(d.sock, 0o666)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", otus_bin(), "task",
                                "list", "--socket", d.sock], capture_output=True, text=True, timeout=30)
            assert r.returncode == 2 and "permission denied" in r.stderr, r.stderr
        finally:
            d.stop()
    r = subprocess.run([otus_bin(), "status", "--socket", str(tmp_path / "otus.sock")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "no daemon is running" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_soak_create_delete_while_traffic_flows(tmp_path):
    """Bounded (about a minute): tasks come and go under traffic; fds, threads, memory stay flat."""
    require_root_and()
    with veth_pair("dm4", subnet=85) as p:
        d = DaemonRun(tmp_path, p.ns_b, 19600 + os.getpid() % 250)
        d.start()
        try:
            pid = d.proc.pid

            def usage() -> tuple[int, int, int]:
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                status = open(f"/proc/{pid}/status").read()
                threads = int(status.split("Threads:")[1].split()[0])
                rss = int(status.split("VmRSS:")[1].split()[0])
                return fds, threads, rss
            tf = task_file(tmp_path, "soak", p.if_b, tmp_path / "s.jsonl")
            otus(d.sock, "task", "create", "-f", tf)
            otus(d.sock, "task", "delete", "soak")
            base = usage()
            deadline = time.time() + 45
            rounds = 0
            while time.time() < deadline and rounds < 40:
                otus(d.sock, "task", "create", "-f", tf)
                send(p, f"soak{rounds}", 20)
                otus(d.sock, "task", "delete", "soak")
                rounds += 1
            end = usage()
            assert rounds >= 5
            assert end[0] <= base[0] + 2, (base, end)       # file descriptors
            assert end[1] <= base[1] + 2, (base, end)       # threads
            assert end[2] <= base[2] + 20_000, (base, end)  # RSS in kB
        finally:
            d.stop()
