"""The status daemon stops at once when told to, even in the middle of a slow roll-up.

kopf keeps a deleted CaptureTask's finalizer until its daemons have exited, and a daemon that misses
kopf's instant-exit window is only looked at again on a later handling cycle (after its cancellation
timeout): a daemon waiting for a roll-up that a loaded API server answers slowly held the deletion
for seconds (the operator tests timed out waiting for deleted tasks under load).  Here the roll-up
blocks until the test lets it go; the stop flag is a stand-in with the two things the daemon uses of
kopf's DaemonStopped (truth value, ``await wait()``), whose constructor is kopf-internal.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from otus_operator import handlers

NS = "status-loop-test"      # the session's operator may run real status loops meanwhile: they keep the real roll-up
REAL = handlers.roll_up_once


class Stopped:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


def test_a_stop_during_a_blocked_roll_up_returns_at_once(monkeypatch):
    release = threading.Event()
    entered = threading.Event()
    rounds: list[float] = []

    def slow_roll_up(name, namespace, cfg):
        if namespace != NS:
            return REAL(name, namespace, cfg)
        rounds.append(time.monotonic())
        entered.set()
        release.wait(10)              # an API call that takes long
        return None

    monkeypatch.setattr(handlers, "roll_up_once", slow_roll_up)
    memo = handlers.memo(handlers.OperatorConfig(status_interval_s=0.05))

    async def main() -> float:
        stopped = Stopped()
        daemon = asyncio.ensure_future(handlers.status_loop(stopped=stopped, name="t", namespace=NS,
                                                            logger=logging.getLogger("test"), memo=memo))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        stopped.event.set()
        await asyncio.wait_for(daemon, 5)
        took = time.monotonic() - t0
        release.set()                 # the abandoned roll-up ends; asyncio.run waits for its thread
        return took

    try:
        took = asyncio.run(main())
    finally:
        release.set()
    assert took < 0.5, f"the daemon took {took:.2f} s to return while its roll-up was blocked"
    assert len(rounds) == 1


def test_rounds_follow_the_interval_and_a_failed_round_is_not_the_end(monkeypatch):
    calls: list[float] = []

    def roll_up(name, namespace, cfg):
        if namespace != NS:
            return REAL(name, namespace, cfg)
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("API away")
        return None

    monkeypatch.setattr(handlers, "roll_up_once", roll_up)
    memo = handlers.memo(handlers.OperatorConfig(status_interval_s=0.2))

    async def main() -> None:
        stopped = Stopped()
        daemon = asyncio.ensure_future(handlers.status_loop(stopped=stopped, name="t", namespace=NS,
                                                            logger=logging.getLogger("test"), memo=memo))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        stopped.event.set()
        await asyncio.wait_for(daemon, 5)

    asyncio.run(asyncio.wait_for(main(), 20))
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(g >= 0.19 for g in gaps), gaps          # one roll-up per interval, also after a failure
