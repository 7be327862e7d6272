"""When a capture in a network namespace is really listening, read from /proc/net/packet.

A packet socket is listed from ``socket()`` on, before its bind; packets sent in between are lost to it.
Ready means bound to the wanted interface (column Iface, 0 for ``any``) and running (column R). The local
simulator, the live tests and the live benches all wait through this one reading of the table.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PacketSocket:
    ifindex: int
    running: bool


class NotListening(RuntimeError):
    """The wanted packet sockets did not show in time, or a process they depend on ended."""


def parse(text: str) -> list[PacketSocket]:
    """The rows of /proc/net/packet (``sk RefCnt Type Proto Iface R Rmem User Inode``)."""
    rows = text.splitlines()
    if not rows:
        return []
    head = rows[0].split()
    try:
        at_if, at_r = head.index("Iface"), head.index("R")
    except ValueError:
        raise NotListening(f"unexpected /proc/net/packet header: {rows[0]!r}") from None
    out = []
    for row in rows[1:]:
        f = row.split()
        if len(f) > max(at_if, at_r):
            out.append(PacketSocket(int(f[at_if]), f[at_r] == "1"))
    return out


def _exec(ns: str | None, *argv: str) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout


def ifindex(ns: str | None, ifname: str) -> int:
    """The interface's index as the table shows it; ``any`` is 0."""
    if ifname == "any":
        return 0
    return int(_exec(ns, "cat", f"/sys/class/net/{ifname}/ifindex").strip())


def listening(ns: str | None, ifname: str) -> int:
    """How many packet sockets in ``ns`` are bound to ``ifname`` and running."""
    want = ifindex(ns, ifname)
    return sum(1 for s in parse(_exec(ns, "cat", "/proc/net/packet")) if s.running and s.ifindex == want)


def wait(ns: str | None, ifname: str, count: int = 1, timeout: float = 15, settle: float = 0.3,
         alive: Callable[[], str | None] = lambda: None) -> None:
    """Return once ``count`` sockets listen on ``ifname`` in ``ns``, then ``settle`` seconds more (the
    kernel filter and the ring's first block follow the bind). ``alive`` returns why a process the
    capture depends on has ended, or None; either that or the ``timeout`` raises NotListening."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        dead = alive()
        if dead:
            raise NotListening(dead)
        seen = listening(ns, ifname)
        if seen >= count:
            time.sleep(settle)
            return
        if time.monotonic() > deadline:
            raise NotListening(f"{seen} of {count} packet sockets listening on {ifname} in {ns or 'this namespace'}"
                               f" after {timeout:g} s")
        time.sleep(0.1)
