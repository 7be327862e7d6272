"""Print a Kafka topic's records as lines on stdout, from the beginning, until SIGTERM.

Used by the local simulator to read back what the agent delivered (a real
consumer on a real broker).  Creates the topic (one partition) if missing, and
assigns partitions directly: no consumer-group rebalance to wait for.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kafkatail")
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args(argv)
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": args.brokers})
    fut = admin.create_topics([NewTopic(args.topic, 1, 1)])[args.topic]
    try:
        fut.result(15)
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            print(f"kafkatail: cannot create {args.topic}: {e}", file=sys.stderr)
            return 1
    c = Consumer({"bootstrap.servers": args.brokers, "group.id": "otus-sim-tail", "enable.auto.commit": False})
    parts = []
    deadline = time.monotonic() + 15
    while not parts and time.monotonic() < deadline:
        md = c.list_topics(args.topic, timeout=5).topics.get(args.topic)
        parts = sorted(md.partitions) if md is not None and md.partitions else []
    c.assign([TopicPartition(args.topic, p, 0) for p in parts])
    print("", file=sys.stderr, flush=True)          # ready
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    out = sys.stdout.buffer
    while not stop[0]:
        for m in c.consume(500, 0.2):
            if m.error() is None and m.value() is not None:
                out.write(m.value() + b"\n")
        out.flush()
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
