"""Helpers every test tier shares: a free loopback port, and waiting for a condition with a bound."""
from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any, Callable


class Clock:
    """A clock the test moves by hand (``clock.t += 5``), for code that takes a ``clock`` callable."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def free_port(udp: bool = False) -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fn: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``fn`` until it returns something truthy or ``timeout`` passes; returns its last value (an
    exception counts as None: the thing polled for may not exist yet)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = None
        with contextlib.suppress(Exception):
            last = fn()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> Any:
    """``poll``, failing the test with the last value when ``fn`` never became truthy."""
    last = poll(fn, timeout, interval)
    if not last:
        raise AssertionError(f"timed out waiting for {what}; last value: {json.dumps(last, default=str)[:2000]}")
    return last


def decode(frame: bytes, linktype: int = 1, verify: bool = True, vxlan: bool = True) -> tuple[dict, dict]:
    """Decode one frame with the agent's decoder and return its fields by name, and its counters."""
    from otus_agent.decode import decoder as D

    dec = D.Decoder(1, verify_ipv4_checksum=verify, decode_vxlan=vxlan)
    out = dec.decode_one(bytes(frame), linktype)
    fields = {k[2:].lower(): out[D.LAYOUT[k]] for k in D.LAYOUT if k.startswith("F_")}
    fields["payload"] = bytes(frame)[fields["payoff"]:fields["payoff"] + fields["paylen"]]
    return fields, dec.counters(nonzero=True)
