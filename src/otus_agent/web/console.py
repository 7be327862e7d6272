"""`otus console`: the same page and API for the whole cluster, fed from Kafka (read-only for tasks).

Every agent's records arrive on the topic (keyed by Call-ID); a call seen by several agents is one
entry, its messages from each capture point in capture order, and each call lists the agents that saw
it.  Tasks are managed on each agent, so task changes are refused here (405).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import uuid

log = logging.getLogger("otus.console")


def add_parser(sub) -> None:
    c = sub.add_parser("console", help="serve the web console for the whole cluster, from Kafka (read-only)",
                       description="Consume every agent's records from Kafka and serve the console page and the "
                                   "HTTP API (tasks read-only).")
    c.add_argument("--kafka-brokers", required=True, metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    c.add_argument("--topic", required=True, help="the records' topic")
    c.add_argument("--listen", default="127.0.0.1:8080", metavar="[HOST]:PORT", help="default 127.0.0.1:8080")
    c.add_argument("--from-beginning", action="store_true", help="read the topic from its start (default: new only)")
    c.add_argument("--calls", type=int, default=1000, help="calls kept in memory (default 1000)")
    c.set_defaults(func=run)


class KafkaFeed:
    """Records from the topic into the store, on a thread; a consumer error is logged, never fatal."""

    def __init__(self, brokers: str, topic: str, on_line, from_beginning: bool):
        from confluent_kafka import Consumer
        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"otus-console-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest" if from_beginning else "latest"},
                                 logger=logging.getLogger("otus.kafka.librdkafka"))
        self.consumer.subscribe([topic])
        self.on_line, self.messages, self.errors = on_line, 0, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-console-kafka", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self.consumer.consume(500, 0.5)
            for m in msgs:
                if m.error():
                    self.errors += 1
                    continue
                self.messages += 1
                for line in (m.value() or b"").split(b"\n"):
                    if line:
                        self.on_line(line)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.consumer.close()


def run(args: argparse.Namespace) -> int:
    from otus_agent.web.server import HttpServer
    from otus_agent.web.store import RecordStore
    from otus_spec import HttpConfig, SpecError
    try:
        address = HttpConfig(listen=args.listen).address()
    except ValueError as e:
        raise SpecError(f"--listen: {e}") from None
    store = RecordStore(max_calls=max(1, args.calls))
    feed = KafkaFeed(args.kafka_brokers, args.topic, store.add_line, args.from_beginning)
    try:
        http = HttpServer(address, store, None, lambda: None, 1 << 20, title="Otus cluster")
    except OSError as e:
        feed.close()
        raise SpecError(f"--listen {args.listen}: {e.strerror or e}") from None
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    feed.start()
    http.start()
    print(f"otus console: http://{address[0]}:{http.port}/ (records from {args.topic})", flush=True)
    while not stop.wait(0.5):
        pass
    http.close()
    feed.close()
    return 0
