"""Network namespaces joined by a veth pair, for tests that send real packets.

Traffic stays between the two namespaces this helper creates; both are
removed on exit, also when the test fails.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from otus_agent.sim import packet_sockets


def sh(*args: str, check: bool = True, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def require_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for t in ("ip", *tools):
        if shutil.which(t) is None:
            pytest.skip(f"needs {t} (scripts/bootstrap installs it as root)")


@dataclass
class Pair:
    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    ip_a: str
    ip_b: str

    def run(self, ns: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, **kw)

    def popen(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)


@contextlib.contextmanager
def veth_pair(tag: str, subnet: int = 77) -> Iterator[Pair]:
    """Namespaces otus-<tag>-a/-b with 10.<subnet>.<pid%250>.1/.2 on a veth pair."""
    pid = os.getpid() % 250
    p = Pair(f"otus-{tag}-{pid}-a", f"otus-{tag}-{pid}-b", f"ot{tag[:4]}{pid}a", f"ot{tag[:4]}{pid}b",
             f"10.{subnet}.{pid}.1", f"10.{subnet}.{pid}.2")
    try:
        for ns in (p.ns_a, p.ns_b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", p.if_a, "netns", p.ns_a, "type", "veth", "peer", "name", p.if_b, "netns", p.ns_b)
        for ns, ifname, ip in ((p.ns_a, p.if_a, p.ip_a), (p.ns_b, p.if_b, p.ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        yield p
    finally:
        for ns in (p.ns_a, p.ns_b):
            sh("ip", "netns", "del", ns, check=False)


def wait_for_packet_sockets(p: Pair, ns: str, count: int = 1, timeout: float = 15, settle: float = 0.2,
                            ifname: str | None = None, proc: subprocess.Popen | None = None) -> None:
    """Until ``count`` captures listen in ``ns`` on ``ifname`` (default: the pair's interface there):
    bound and running, as the shipped simulator waits (otus_agent.sim.packet_sockets). Fails early when
    ``proc`` (the capture's process) ends, with its stderr when that is a pipe."""
    def alive() -> str | None:
        if proc is None or proc.poll() is None:
            return None
        return f"the capture ended: {proc.stderr.read()[-800:] if proc.stderr else proc.returncode}"
    try:
        packet_sockets.wait(ns, ifname or (p.if_a if ns == p.ns_a else p.if_b), count, timeout, settle, alive)
    except packet_sockets.NotListening as e:
        raise AssertionError(f"otus did not open its packet socket: {e}") from None


def kill_a_worker(proc: subprocess.Popen, workers: int = 2, timeout: float = 10) -> None:
    """SIGKILL the first fanout worker of ``proc`` (a process this test started) and wait until its
    parent has ``workers`` children again, the killed one not among them."""
    children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
    assert len(children) == workers
    os.kill(int(children[0]), 9)
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        if len(now) == workers and children[0] not in now:
            return
        time.sleep(0.1)


def stop(proc: subprocess.Popen, timeout: float = 5) -> None:
    """End a process this test started (by its own handle), politely first."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
