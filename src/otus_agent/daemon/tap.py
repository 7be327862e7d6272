"""The record tap: task processes copy their JSON-line records to the daemon, for the web console.

Only present when the daemon serves HTTP (``otus.http.enabled``).  A task sends whole lines in
datagrams on a Unix datagram socket, never blocking: when the daemon's queue is full (the kernel
holds at most net.unix.max_dgram_qlen datagrams -- 10 by default, of up to ``DATAGRAM_MAX`` bytes each
-- and ``RCVBUF`` bytes) or no daemon listens, the lines are dropped and counted
(``tap.dropped_lines`` in the task's stats) -- the capture path never waits for the console.
Kafka/files stay the record of truth; the tap is a best-effort window.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable

log = logging.getLogger("otus.tap")
DATAGRAM_MAX = 32 << 10   # bytes of whole lines per datagram (a longer single line is dropped, counted)
RCVBUF = 4 << 20          # the daemon's receive buffer: what may be in flight before tasks drop


class TapSender:
    """The task side: ``write`` (same signature as a line writer) never blocks and never raises."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent_lines = self.dropped_lines = 0

    def write(self, data: bytes) -> None:
        start, n = 0, len(data)
        while start < n:
            end = min(n, start + DATAGRAM_MAX)
            if end < n:
                cut = data.rfind(b"\n", start, end)
                if cut < start:     # one line longer than a datagram: skip it
                    nxt = data.find(b"\n", end)
                    end = n if nxt < 0 else nxt + 1
                    self.dropped_lines += 1
                    start = end
                    continue
                end = cut + 1
            chunk = data[start:end]
            lines = chunk.count(b"\n") or 1
            try:
                self.sock.sendto(chunk, self.path)
                self.sent_lines += lines
            except OSError:        # EAGAIN (buffer full), ENOENT/ECONNREFUSED (no daemon): dropped
                self.dropped_lines += lines
            start = end

    def stats(self) -> dict:
        return {"sent_lines": self.sent_lines, "dropped_lines": self.dropped_lines}

    def close(self) -> None:
        self.sock.close()


class TapReceiver:
    """The daemon side: a thread hands every received line (bytes, no newline) to ``on_line``."""

    def __init__(self, path: str, on_line: Callable[[bytes], None]):
        self.path, self.on_line = path, on_line
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.settimeout(0.5)
        self.received = self.errors = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-tap", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(DATAGRAM_MAX + 1)
            except TimeoutError:
                continue
            except OSError:
                break
            for line in data.split(b"\n"):
                if line:
                    self.received += 1
                    try:
                        self.on_line(line)
                    except Exception as e:  # a bad line must not stop the tap
                        self.errors += 1
                        log.debug(f"tap: line refused: {type(e).__name__}: {e}")

    def stats(self) -> dict:
        return {"received_lines": self.received, "refused_lines": self.errors}

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
