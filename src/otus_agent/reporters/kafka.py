"""Kafka reporter: records go through the disk spool, then to an idempotent producer.

The key is the Call-ID, so one dialog stays ordered in one partition.  A
sender thread reads the spool in order and produces; delivery reports move
the spool's durable cursor over the confirmed prefix only.  Messages never
time out inside librdkafka (message.timeout.ms=0): while the broker is down
at most ``max_in_flight`` records wait in memory, the rest wait on disk, and
order is kept.  Secrets (sasl.password, ssl key passwords) are never logged.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from otus_agent.reporters.spool import Spool

log = logging.getLogger("otus.kafka")
SECRET_KEYS = ("sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret")


def redact(conf: dict) -> dict:
    return {k: ("<redacted>" if k in SECRET_KEYS else v) for k, v in conf.items()}


class KafkaReporter:
    def __init__(self, brokers: list[str], topic: str, spool: Spool, extra_conf: dict | None = None,
                 max_in_flight: int = 20000):
        from confluent_kafka import Producer
        if not brokers:
            raise ValueError("kafka reporter: no brokers")
        self.topic = topic
        self.spool = spool
        self.max_in_flight = max_in_flight
        conf = {"bootstrap.servers": ",".join(brokers), "enable.idempotence": True, "acks": "all",
                "compression.type": "lz4", "linger.ms": 20, "batch.num.messages": 10000,
                "message.timeout.ms": 0, "queue.buffering.max.messages": max_in_flight * 2,
                "client.id": "otus-agent"}
        conf.update(extra_conf or {})
        log.info(f"kafka producer: {redact(conf)}")
        # librdkafka's own messages (a broker down repeats every second) go to a logger of
        # their own, never straight to stderr
        self.producer = Producer(conf, logger=logging.getLogger("otus.kafka.librdkafka"))
        self.in_flight: deque = deque()  # [pos, delivered] in send order
        self.delivered = 0
        self.failed = 0
        self.fatal: str | None = None
        self._resend = False  # set by a failed delivery report: no scan of in_flight per loop
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-kafka", daemon=True)
        self.thread.start()

    def write(self, records: list[tuple[bytes, bytes]]) -> None:
        if records:
            self.spool.append(records)
            self._wake.set()

    def _on_delivery(self, entry: list, err, msg) -> None:
        if err is None:
            entry[1] = True
            self.delivered += 1
        else:
            self.failed += 1
            if err.fatal():
                self.fatal = str(err)
            entry[1] = None  # failed: the spool is rewound and the record sent again
            self._resend = True

    def _run(self) -> None:
        p = self.producer
        while not self._stop.is_set() or self.in_flight:
            room = self.max_in_flight - len(self.in_flight)
            if room > 0 and self.fatal is None:
                for pos, key, value, _ms in self.spool.read(min(room, 5000)):
                    entry = [pos, False]
                    while True:
                        try:
                            p.produce(self.topic, value=value, key=key or None,
                                      on_delivery=lambda err, msg, e=entry: self._on_delivery(e, err, msg))
                            break
                        except BufferError:
                            p.poll(0.05)
                    self.in_flight.append(entry)
            p.poll(0.05 if self.in_flight else 0)
            self._settle()
            if not self.in_flight:
                if self._stop.is_set():
                    break
                self._wake.wait(0.1)
                self._wake.clear()

    def _settle(self) -> None:
        last = None
        n = 0
        q = self.in_flight
        while q and q[0][1] is True:
            last = q.popleft()[0]
            n += 1
        if last is not None:
            self.spool.ack(last, n)
        if self._resend:
            # a delivery failed (not expected with message.timeout.ms=0 unless fatal): resend in order
            self._resend = False
            self.producer.flush(5)
            q.clear()
            self.spool.rewind()

    def flush(self, timeout: float) -> bool:
        """Wait until everything spooled is confirmed; False on timeout (the rest stays spooled)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if self.spool.pending() == 0 and not self.in_flight:
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict:
        return {"kafka_delivered": self.delivered, "kafka_failed": self.failed, "kafka_in_flight": len(self.in_flight),
                "kafka_fatal": self.fatal, **self.spool.stats()}

    def close(self, timeout: float = 10) -> None:
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout + 5)
        self.producer.flush(1)
        self.spool.close()
