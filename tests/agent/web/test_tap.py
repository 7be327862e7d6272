"""The record tap: whole lines in datagrams, never blocking, drops counted when nobody reads; and a
daemon task with fanout workers still feeds the console (its lines go through the task's parent)."""
from __future__ import annotations

import socket
import time
import uuid

from otus_agent.daemon.tap import DATAGRAM_MAX, TapReceiver, TapSender

from .conftest import free_port, send_call, task_yaml, wait_for


def test_lines_arrive_whole_and_long_lines_are_counted(tmp_path):
    got: list[bytes] = []
    rx = TapReceiver(str(tmp_path / "t.sock"), got.append)
    rx.start()
    tx = TapSender(str(tmp_path / "t.sock"))
    # ~100 KB: a few datagrams, within what the kernel queues for one reader (net.unix.max_dgram_qlen)
    lines = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i * 37 % 900)) for i in range(200)]
    tx.write(b"".join(line + b"\n" for line in lines) + b"y" * (DATAGRAM_MAX + 10) + b"\n" + b'{"last": 1}\n')
    wait_for(lambda: len(got) >= 201, 10, what="the lines")
    assert got == lines + [b'{"last": 1}'] and tx.stats() == {"sent_lines": 201, "dropped_lines": 1}
    rx.close()
    tx.close()


def test_never_blocks_and_counts_drops(tmp_path):
    tx = TapSender(str(tmp_path / "nobody.sock"))       # no daemon listening
    tx.write(b"a\nb\n")
    assert tx.stats() == {"sent_lines": 0, "dropped_lines": 2}
    # a receiver that never reads: its buffer fills, the sender goes on and counts
    path = str(tmp_path / "slow.sock")
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.bind(path)
    tx = TapSender(path)
    t0 = time.monotonic()
    for _ in range(2000):
        tx.write(b"x" * 1000 + b"\n")
    assert time.monotonic() - t0 < 5
    st = tx.stats()
    assert st["sent_lines"] + st["dropped_lines"] == 2000 and st["dropped_lines"] > 1000
    slow.close()


def test_task_with_workers_feeds_the_console(daemon):
    port = free_port(udp=True)
    tid = "wk-" + uuid.uuid4().hex[:6]
    code, body = daemon.request("POST", "/api/v1/tasks", (task_yaml(tid, port) + "workers: 2\n").encode())
    assert code == 201, body
    try:
        # The workers' sockets open a moment after the task is created (later on a busy machine): a call
        # sent before that is not captured, so send a fresh call until one arrives whole (bounded: 8 tries).
        for attempt in range(8):
            cid = f"wk-{uuid.uuid4().hex}@t"
            sent = send_call(port, cid)
            try:
                wait_for(lambda: any(c["call_id"] == cid and c["messages"] == len(sent)
                                     for c in daemon.get("/api/v1/calls")), 3, what="the call captured by a 2-worker task")
                break
            except AssertionError:
                if attempt == 7:
                    raise
        def tap_counted():   # the task's stats reach the daemon periodically, after the lines themselves
            tap = daemon.get(f"/api/v1/tasks/{tid}")["stats"].get("tap")
            return tap if tap and tap["sent_lines"] >= len(sent) else None
        tap = wait_for(tap_counted, 10, what="the task's tap counters")
        assert tap["dropped_lines"] == 0
    finally:
        daemon.request("DELETE", f"/api/v1/tasks/{tid}")
