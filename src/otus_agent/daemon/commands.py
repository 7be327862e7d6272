"""The Kafka command channel: the same requests as the control socket, from a topic.

A command is a JSON object: {"request_id": "...", "token": "...", "agent": "<optional host>",
"cmd": "task.create", "spec": {...}}.  The token must equal the shared secret in the
environment variable the configuration names (no token configured: the channel does not
start); a command for another agent is ignored.  Every command is answered on the reply
topic (key: request_id) with {"request_id", "agent", "ok", "result" | "error"}; a malformed,
unauthorised or failing command gets an error reply and never stops the consumer.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from typing import Callable

log = logging.getLogger("otus.commands")
MAX_COMMAND = 1 << 20


class CommandChannel:
    def __init__(self, brokers: list[str], topic: str, reply_topic: str, token: str,
                 dispatch: Callable[[bytes], dict], agent: str | None = None):
        from confluent_kafka import Consumer, Producer
        if not token:
            raise ValueError("command channel: no token configured")
        self.topic, self.reply_topic, self.token = topic, reply_topic, token
        self.dispatch = dispatch
        self.agent = agent or socket.gethostname()
        bs = self._servers = ",".join(brokers)
        rd = logging.getLogger("otus.kafka.librdkafka")
        self.consumer = Consumer({"bootstrap.servers": bs, "group.id": f"otus-agent-{self.agent}",
                                  "enable.auto.commit": True, "auto.offset.reset": "latest"}, logger=rd)
        self.producer = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True}, logger=rd)
        self.ready = threading.Event()
        self.handled = self.rejected = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-commands", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _assign(self) -> None:
        """Every partition of the command topic, from its end: each agent sees every command
        (no group rebalancing to wait for)."""
        from confluent_kafka import OFFSET_END, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self._servers})
        md = admin.list_topics(timeout=10)
        if self.topic not in md.topics or md.topics[self.topic].error is not None:
            admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=1)])[self.topic].result(10)
            md = admin.list_topics(self.topic, timeout=10)
        parts = list(md.topics[self.topic].partitions) or [0]
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in parts])

    def handle(self, raw: bytes) -> dict | None:
        """One command to its reply (None: addressed to another agent)."""
        rid = None
        try:
            if len(raw) > MAX_COMMAND:
                raise ValueError("command too large")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("command must be a JSON object")
            rid = data.pop("request_id", None)
            if rid is not None and not isinstance(rid, str):
                rid = None
                raise ValueError("request_id must be a string")
            token = data.pop("token", None)
            target = data.pop("agent", None)
            if target is not None and target != self.agent:
                return None
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token.encode()):
                self.rejected += 1
                log.warning("command rejected: unauthorised")
                return {"request_id": rid, "agent": self.agent, "ok": False, "error": "unauthorised"}
            reply = self.dispatch(json.dumps(data).encode())
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            self.rejected += 1
            return {"request_id": rid, "agent": self.agent, "ok": False, "error": f"malformed command: {e}"}
        self.handled += 1
        return {"request_id": rid, "agent": self.agent, **reply}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.ready.is_set():
                    self._assign()
                    self.ready.set()
                msg = self.consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                reply = self.handle(msg.value() or b"")
                if reply is not None:
                    self.producer.produce(self.reply_topic, key=(reply["request_id"] or "").encode(),
                                          value=json.dumps(reply).encode())
                    self.producer.poll(0)
            except Exception as e:  # the channel keeps going; the error is logged once per loop
                log.error(f"command channel: {type(e).__name__}: {e}")
                self._stop.wait(2)

    def stats(self) -> dict:
        return {"commands_handled": self.handled, "commands_rejected": self.rejected}

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.producer.flush(5)
        self.consumer.close()
