"""Where a task's records go: JSON lines (console/file) and/or Kafka, serialised once."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from otus_agent.reporters.serialize import dumps

FLUSH_EVERY = 2000  # records buffered before a flush, at most
LINES_MAX = 256 << 10  # bytes of JSON lines buffered before they are written, at most


@dataclass
class KafkaSettings:
    brokers: list[str]
    topic: str = "otus-sip"            # "{task}" is replaced by the task id
    spool_dir: str = "/var/lib/otus/spool"
    spool_max_bytes: int = 1 << 30
    spool_policy: str = "drop-newest"  # or "block"
    flush_timeout_s: float = 30.0
    conf: dict | None = None           # passed to librdkafka as is (SASL/TLS); secrets never logged

    def reporter(self, task: str, worker: int | None):
        from otus_agent.reporters.kafka import KafkaReporter
        from otus_agent.reporters.spool import Spool
        d = os.path.join(self.spool_dir, task if worker is None else f"{task}-w{worker}")
        return KafkaReporter(self.brokers, self.topic.replace("{task}", task),
                             Spool(d, self.spool_max_bytes, min(16 << 20, self.spool_max_bytes), self.spool_policy),
                             self.conf)


@dataclass
class HepSettings:
    address: str
    proto: str = "udp"
    node_id: int = 2001
    node_name: str | None = None
    password: str | None = None   # HEP auth key; never logged

    def reporter(self):
        from otus_agent.reporters.hep import HepReporter
        return HepReporter(self.address, self.proto, self.node_id, self.node_name, self.password)


class RecordSink:
    def __init__(self, write_lines: Callable[[bytes], None] | None, kafka=None, hep=None):
        self.write_lines = write_lines
        self.kafka = kafka
        self.hep = hep
        self.raw = hep.send if hep is not None else None
        self.lines = bytearray()
        self.pairs: list[tuple[bytes, bytes]] = []

    def emit(self, rec: dict) -> None:
        data = dumps(rec)
        if self.write_lines is not None:
            self.lines += data
            self.lines += b"\n"
            self._spill()
        if self.kafka is not None:
            cid = rec.get("call_id")
            self.pairs.append((cid.encode("utf-8", "surrogateescape") if cid else b"", data))
            if len(self.pairs) >= FLUSH_EVERY:
                self.kafka.write(self.pairs)
                self.pairs = []

    def _spill(self) -> None:
        """Write the buffered lines once they reach LINES_MAX: the buffer stays bounded."""
        if len(self.lines) >= LINES_MAX:
            self.write_lines(bytes(self.lines))
            self.lines.clear()

    def emit_block(self, data: bytes, pairs: list | None) -> None:
        """Records already serialised (JSON lines) and, for Kafka, their (key, record) pairs."""
        if self.write_lines is not None:
            if self.lines:
                self.lines += data        # after the records still waiting: order kept
                self._spill()
            else:
                self.write_lines(data)
        if self.kafka is not None and pairs:
            self.pairs.extend(pairs)
            if len(self.pairs) >= FLUSH_EVERY:
                self.kafka.write(self.pairs)
                self.pairs = []

    def flush(self) -> None:
        if self.lines:
            self.write_lines(bytes(self.lines))
            self.lines.clear()
        if self.pairs:
            self.kafka.write(self.pairs)
            self.pairs = []

    def stats(self) -> dict:
        s = self.kafka.stats() if self.kafka is not None else {}
        if self.hep is not None:
            s.update(self.hep.stats())
        return s

    def close(self, timeout: float) -> dict:
        self.flush()
        s = {}
        if self.kafka is not None:
            drained = self.kafka.flush(timeout)
            s = self.kafka.stats()
            s["kafka_drained"] = drained
            self.kafka.close(0.5)
        if self.hep is not None:
            s.update(self.hep.stats())
            self.hep.close()
        return s
