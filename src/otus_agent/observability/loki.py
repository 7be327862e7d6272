"""Optional Loki push for the daemon's logs: batched, bounded, never blocking the caller.

Log records wait in a bounded buffer (``max_lines``); a background thread
pushes them every ``interval_s`` to Loki's /loki/api/v1/push as JSON.  When
the buffer is full the newest lines are dropped and counted; a failed push
is counted and its lines dropped (Loki being down must not grow memory).
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.request
from collections import deque


class LokiHandler(logging.Handler):
    def __init__(self, endpoint: str, labels: dict | None = None, max_lines: int = 10000, interval_s: float = 1.0,
                 timeout_s: float = 5.0):
        super().__init__()
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"loki endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint, self.max_lines, self.interval_s, self.timeout_s = endpoint, max_lines, interval_s, timeout_s
        self.labels = {"job": "otus", "host": socket.gethostname(), **(labels or {})}
        self.buf: deque = deque()
        self._buf_lock = threading.Lock()  # not self.lock: logging.Handler owns that one
        self.dropped = self.pushed = self.failed = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-loki", daemon=True)
        self.thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a bad log record must not break the caller
            self.handleError(record)
            return
        with self._buf_lock:
            if len(self.buf) >= self.max_lines:
                self.dropped += 1
                return
            self.buf.append((str(int(record.created * 1e9)), line))

    def _push(self) -> None:
        with self._buf_lock:
            batch = list(self.buf)
            self.buf.clear()
        if not batch:
            return
        body = json.dumps({"streams": [{"stream": self.labels, "values": batch}]}).encode()
        req = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                r.read()
            self.pushed += len(batch)
        except OSError:
            self.failed += len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._push()

    def stats(self) -> dict:
        return {"loki_buffered": len(self.buf), "loki_pushed": self.pushed, "loki_dropped": self.dropped,
                "loki_failed": self.failed}

    def close(self) -> None:
        self._stop.set()
        self.thread.join(self.timeout_s + 1)
        self._push()
        super().close()
