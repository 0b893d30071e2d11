"""The limit on Kafka: a bare confluent-kafka producer and consumer, no library.

One topic, one partition. Enqueue: ``produce`` per record and one ``flush``
per 5,000 (bulk), or ``produce`` and ``flush`` (one job); librdkafka's
default producer settings. The worker waits in ``poll`` for a record, takes
up to 499 more already fetched (``consume`` without waiting) and runs them;
offsets are committed automatically (librdkafka's default). At concurrency 4
the records of a batch go to a pool of 4 threads. Consumer-group settings
are the Tansu test broker's fast ones, as for every Kafka entry here.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from record import record

BOOTSTRAP = os.environ.get("BENCH_PEERS_URL", "127.0.0.1:9092")
TOPIC = "raw_jobs"
CHUNK = 5000
ENQUEUE = "`Producer.produce` per record, one `flush` per 5,000"
WORKER = (
    "one loop: `Consumer.poll`, then up to 499 more already fetched; automatic commits; "
    "at 4: a pool of 4 threads"
)
TANSU = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100}

_producer: Producer | None = None


def _p() -> Producer:
    global _producer
    if _producer is None:
        _producer = Producer({"bootstrap.servers": BOOTSTRAP})
    return _producer


def setup() -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        future.result(30)


def enqueue_many(count: int) -> None:
    producer = _p()
    for _ in range(count):
        producer.produce(TOPIC, b"0")
    producer.flush(60)


def enqueue_one(t: float) -> None:
    producer = _p()
    producer.produce(TOPIC, repr(t).encode())
    producer.flush(60)


def work(concurrency: int | None) -> None:
    pool = ThreadPoolExecutor(concurrency) if concurrency else None
    consumer = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": "raw", "auto.offset.reset": "earliest", **TANSU}
    )
    consumer.subscribe([TOPIC])
    while True:
        first = consumer.poll(1.0)  # waits for a record; then takes what is already fetched
        if first is None:
            continue
        batch = [first, *consumer.consume(499, 0)]
        rows = [float(m.value()) for m in batch if m.error() is None]
        if pool is None:
            for t in rows:
                record(t)
        else:
            list(pool.map(record, rows))


def worker_argv(concurrency: int | None) -> list[str]:
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
    return [sys.executable, client, "raw_kafka", "work", str(concurrency or "default")]
