"""Loki push: batches reach a real HTTP endpoint; a full buffer and a dead endpoint are counted."""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from otus_agent.observability.logs import JsonFormatter
from otus_agent.observability.loki import LokiHandler


def test_push_full_and_down():
    got = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    h = LokiHandler(f"http://127.0.0.1:{srv.server_address[1]}/loki/api/v1/push", max_lines=5, interval_s=0.2)
    h.setFormatter(JsonFormatter())
    log = logging.getLogger("otus.test.loki")
    log.addHandler(h)
    log.propagate = False
    log.setLevel("INFO")
    for i in range(8):
        log.info(f"line {i}", extra={"task": "t1"})
    time.sleep(0.6)
    assert h.stats()["loki_dropped"] == 3 and h.stats()["loki_pushed"] == 5
    values = [v for push in got for s in push["streams"] for v in s["values"]]
    assert [json.loads(line)["msg"] for _, line in values] == [f"line {i}" for i in range(5)]
    assert got[0]["streams"][0]["stream"]["job"] == "otus" and json.loads(values[0][1])["task"] == "t1"
    srv.shutdown()
    srv.server_close()
    log.info("after the endpoint is gone")
    time.sleep(0.6)
    assert h.stats()["loki_failed"] == 1 and h.stats()["loki_buffered"] == 0
    h.close()
    log.removeHandler(h)
