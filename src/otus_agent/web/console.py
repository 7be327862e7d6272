"""`otus console`: the same page and API for the whole cluster, fed from Kafka (read-only for tasks).

Every agent's records arrive on the topic (keyed by Call-ID); a call seen by several agents is one
entry, its messages from each capture point in capture order, and each call lists the agents that saw
it.  Tasks are managed on each agent, so task changes are refused here (405): the console has no
mutating endpoint, hence no bearer token; who may read it is the network's business (a ClusterIP
Service, ``kubectl port-forward``, an Ingress with authentication).

Kafka authentication is the kafka reporter's (``otus_spec.KafkaAuth``, one definition): librdkafka
settings as ``--kafka-option KEY=VALUE`` (or the named flags below, which set those keys), secrets refused
there; the SASL password only from a file (``--kafka-password-file``, a mounted Secret) or an environment
variable (``--kafka-password-env NAME``, e.g. set from a secretKeyRef), never a flag; the consumer's settings
are logged with secrets redacted.
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
    k = c.add_argument_group("Kafka authentication (the kafka reporter's settings: docs/deployment.md)")
    k.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a librdkafka setting (repeatable), e.g. security.protocol=SASL_SSL; no secrets")
    for flag, key, example in NAMED:
        k.add_argument(f"--kafka-{flag}", metavar=key.upper().replace(".", "_"), help=f"sets {key} (e.g. {example})")
    k.add_argument("--kafka-password-file", metavar="PATH", help="file holding sasl.password (a mounted Secret)")
    k.add_argument("--kafka-password-env", metavar="NAME",
                   help="environment variable holding sasl.password (e.g. from a secretKeyRef)")
    c.set_defaults(func=run)


# flag -> the librdkafka key it sets
NAMED = (("security-protocol", "security.protocol", "SASL_SSL"), ("sasl-mechanism", "sasl.mechanism", "SCRAM-SHA-512"),
         ("sasl-username", "sasl.username", "otus-console"), ("ca-file", "ssl.ca.location", "/etc/otus/kafka-ca/ca.crt"))


def kafka_auth(args: argparse.Namespace):
    """The flags as the shared definition (otus_spec.KafkaAuth); SpecError naming the flag when wrong."""
    from pydantic import ValidationError

    from otus_spec import KafkaAuth, SpecError, check_kafka_options
    options: dict[str, str | int | bool] = {}
    for item in args.kafka_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--kafka-option: expected KEY=VALUE, got {item.split('=')[0]!r}...")
        options[key.strip()] = value
    for flag, key, _ in NAMED:
        value = getattr(args, "kafka_" + flag.replace("-", "_"))
        if value is not None:
            options[key] = value
    try:
        check_kafka_options(options, "--kafka-password-file or --kafka-password-env")
        return KafkaAuth(options=options, password_env=args.kafka_password_env,
                         password_file=args.kafka_password_file)
    except ValueError as e:
        if not isinstance(e, ValidationError):
            raise SpecError(f"--kafka-option: {e}") from None
        raise SpecError("--kafka-*: " + "; ".join(str(x["msg"]).removeprefix("Value error, ") for x in e.errors())) \
            from None


class KafkaFeed:
    """Records from the topic into the store, on a thread; a consumer error is logged, never fatal."""

    def __init__(self, brokers: str, topic: str, on_line, from_beginning: bool, extra_conf: dict | None = None):
        from confluent_kafka import Consumer

        from otus_agent.reporters.kafka import redact
        conf = {"bootstrap.servers": brokers, "group.id": f"otus-console-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False, "auto.offset.reset": "earliest" if from_beginning else "latest",
                **(extra_conf or {})}
        log.info(f"kafka consumer: {redact(conf)}")
        self.consumer = Consumer(conf, logger=logging.getLogger("otus.kafka.librdkafka"))
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
    conf = kafka_auth(args).client_conf()
    from otus_agent.observability import logs
    logs.setup("info", "text", None)
    store = RecordStore(max_calls=max(1, args.calls))
    try:
        feed = KafkaFeed(args.kafka_brokers, args.topic, store.add_line, args.from_beginning, conf)
    except Exception as e:          # confluent_kafka.KafkaException: a setting librdkafka refuses
        raise SpecError(f"kafka: {e}") from None
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
