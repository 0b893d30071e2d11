"""Delay tiers: delayed jobs wait in fixed-delay topics, never in a worker's memory.

A message due in ``d`` seconds is written to the largest tier not exceeding
``d`` (the smallest tier when ``d`` is shorter). A record may leave tier
``T`` at ``min(written_at + T, available_at)``: since every record of a
tier waits the same ``T``, records leave in the order they were written, so
the forwarder only ever waits on the head of a partition, which it does by
pausing the partition (the consumer keeps polling). When the head is due it
is forwarded to the next tier, or to its queue topic once ``available_at``
has passed, and its offset is committed. A job is therefore never runnable
before its ``available_at``, and it is late by at most one forwarding hop
per tier it passes through.

The forwarder runs in a background thread of every process that reserves
jobs, in the consumer group ``<topic_prefix>__delays``: the tier partitions
are shared among the running workers, and a dead worker's partitions move
to another one. Delayed jobs wait while no worker runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from jobs_core.errors import JobsError, MalformedMessage
from jobs_core.message import Message

from jobs_kafka.producing import Record, Writer
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames

log = logging.getLogger("jobs_kafka.delays")

#: Header holding the queue of a delayed record (lets ``stats`` count without decoding).
QUEUE_HEADER = "jobs.queue"
#: Header holding when the record first entered the tiers (``purge`` drops older ones).
DELAYED_AT_HEADER = "jobs.delayed-at"

Key = tuple[str, int]
DeadLetter = Callable[[str, bytes | None, str, tuple[str, int, int]], None]
PurgedBefore = Callable[[str], float]


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of header ``name``, decoded, or ``None``."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


def delayed_record(names: TopicNames, message: Message, body: bytes, now: float, delayed_at: float) -> Record:
    """The tier record holding ``message`` until it is due."""
    tier = names.tier_for(message.available_at - now)
    return Record(
        names.tier_topics[tier],
        body,
        headers=[
            (QUEUE_HEADER, message.queue.encode()),
            (DELAYED_AT_HEADER, repr(delayed_at).encode()),
        ],
    )


class DelayForwarder:
    """Moves due records from the tier topics to the next tier or their queue."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        names: TopicNames,
        admin: TopicAdmin,
        writer: Writer,
        dead_letter: DeadLetter,
        purged_before: PurgedBefore,
    ) -> None:
        self.settings = settings
        self.names = names
        self.admin = admin
        self.writer = writer
        self.dead_letter = dead_letter
        self.purged_before = purged_before
        self.group = f"{settings.topic_prefix}__delays"
        self._held: dict[Key, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the forwarding thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self.admin.ensure(self.names.tier_topics.values())
            self._thread = threading.Thread(target=self._run, name="jobs-kafka-delays", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop forwarding and leave the group. Safe to call twice."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.settings.timeout + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = Consumer(self.settings.consumer_config(self.group))
            try:
                consumer.subscribe(
                    list(self.names.tier_topics.values()),
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                )
                while not self._stop.is_set():
                    self._step(consumer)
            except (JobsError, KafkaException) as exc:
                log.warning("delay forwarder error (restarting in 1 s): %s", exc)
                self._stop.wait(1.0)
            finally:
                self._held.clear()
                try:
                    consumer.close()
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the delay forwarder consumer: %s", exc)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._held.pop((tp.topic, tp.partition), None)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._held.pop((tp.topic, tp.partition), None)

    def _step(self, consumer: Any) -> None:
        now = time.time()
        due = [key for key, at in self._held.items() if at <= now]
        if due:
            consumer.resume([TopicPartition(t, p) for t, p in due])
            for key in due:
                del self._held[key]
        wait = 0.1
        if self._held:
            wait = max(0.0, min(wait, min(self._held.values()) - now))
        messages = consumer.consume(500, wait)
        if not messages:
            return
        now = time.time()
        forwards: list[Record] = []
        commits: dict[Key, int] = {}
        for message in messages:
            if message.error() is not None:
                code = message.error().code()
                if code not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("delay forwarder consumer error: %s", message.error().str())
                continue
            key = (message.topic(), message.partition())
            if key in self._held:
                continue  # fetched ahead of a held head; fetched again after the seek
            record = self._forward(message, now)
            if record is False:
                self._held[key] = self._hold_until(message, now)
                consumer.pause([TopicPartition(*key)])
                consumer.seek(TopicPartition(key[0], key[1], message.offset()))
                continue
            if isinstance(record, Record):
                forwards.append(record)
            commits[key] = message.offset() + 1
        if forwards:
            queues = {r.topic for r in forwards if r.topic not in self.names.tier_by_topic}
            self.admin.ensure(queues)
            self.writer.send(forwards)
        if commits:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in commits.items()], asynchronous=False
            )

    def _hold_until(self, message: Any, now: float) -> float:
        try:
            decoded = Message.decode(message.value() or b"")
        except MalformedMessage:
            return now
        tier = self.names.tier_by_topic[message.topic()]
        return float(min(message.timestamp()[1] / 1000.0 + tier, decoded.available_at))

    def _forward(self, message: Any, now: float) -> Record | bool | None:
        """The record to write for a tier record: ``False`` while not due, ``None`` to drop."""
        origin = (message.topic(), message.partition(), message.offset())
        value = message.value()
        headers = message.headers()
        try:
            decoded = Message.decode(value or b"")
        except MalformedMessage as exc:
            queue = header(headers, QUEUE_HEADER) or ""
            self.dead_letter(queue, value, f"malformed message in delay tier: {exc}", origin)
            return None
        tier = self.names.tier_by_topic[message.topic()]
        leave_at = min(message.timestamp()[1] / 1000.0 + tier, decoded.available_at)
        if leave_at > now:
            return False
        delayed_at = float(header(headers, DELAYED_AT_HEADER) or 0.0)
        if delayed_at < self.purged_before(decoded.queue):
            return None
        if decoded.available_at <= now:
            return Record(self.names.queue(decoded.queue), value)
        return delayed_record(self.names, decoded, value or b"", now, delayed_at)
