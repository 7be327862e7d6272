"""Structured logs: one JSON object per line (or plain text for a terminal), with task/worker fields."""
from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key in ("task", "worker"):
            v = getattr(record, key, None)
            if v is not None:
                out[key] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def setup(level: str = "info", fmt: str = "json", loki_endpoint: str | None = None):
    """Configure the 'otus' loggers; returns the Loki handler when one was asked for."""
    root = logging.getLogger("otus")
    for h in list(root.handlers):
        root.removeHandler(h)
        if hasattr(h, "stats"):
            h.close()
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(h)
    loki = None
    if loki_endpoint:
        from otus_agent.observability.loki import LokiHandler
        loki = LokiHandler(loki_endpoint)
        loki.setFormatter(JsonFormatter())
        root.addHandler(loki)
    root.setLevel(level.upper())
    root.propagate = False
    return loki
