"""Delay tiers: delayed jobs wait in fixed-delay topics, never only in a worker's memory.

A message due in ``d`` seconds is written to the largest tier not exceeding
``d`` (the smallest tier when ``d`` is shorter). A record may leave tier
``T`` at ``min(written_at + T, available_at)``. The forwarder reads each
tier partition into a bounded window (``max_in_flight`` records; the
partition is paused when the window is full, and the consumer keeps
polling), forwards each record when it may leave — to the next tier, or to
its queue topic once ``available_at`` has passed — and commits, per
partition, the lowest offset not yet forwarded. Since every record of a tier
waits the same ``T``, records mostly leave in the order they were written;
within the window they leave in due order whatever their order in the log.
A job is therefore never runnable before its ``available_at``, and it is
late by about one forwarding hop per tier it passes through. An offset is
committed only once every record below it was forwarded and acknowledged by
the brokers; a crash between forwarding and committing forwards the record
again (at least once).

A tier partition whose log went back (records served below the offset
already read: the log was re-created or truncated, and the client started
again from its beginning) or that is read beyond the end of its log (a
broker that lost its data answers such a fetch with nothing) starts its
bookkeeping afresh, with a warning: the records held in memory are written
again to their tier (their log is gone), the partition is read from its
start, and no offset of the old log is ever committed over the new one.

Every queue has its own tiers (``<prefix><queue>__delay-5s``...). Their
forwarder runs in a background thread of every process that reserves from
the queue, in the consumer group ``<prefix><queue>__delays`` (one per queue,
whatever the application's ``group_id``): the tier partitions are shared
among the running workers, and a dead worker's partitions move to another
one. Delayed jobs wait while no worker serves their queue.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from jobs_core.errors import JobsError
from jobs_core.message import Message
from jobs_core.quiet_threads import quiet

from jobs_kafka.keys import key_headers, record_key
from jobs_kafka.offsets import assignment_starts, resume_fresh
from jobs_kafka.producing import Record, Writer
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames

log = logging.getLogger("jobs_kafka.delays")

#: Header holding the queue of a delayed record (lets ``stats`` count without decoding).
QUEUE_HEADER = "jobs.queue"
#: Header holding when the record first entered the tiers (``purge`` drops older ones).
DELAYED_AT_HEADER = "jobs.delayed-at"
#: Seconds between checks that no tier partition is read from beyond the end of its log.
RESET_CHECK_INTERVAL = 1.0

Key = tuple[str, int]
DeadLetter = Callable[[str, bytes | None, str, tuple[str, int, int]], None]
PurgedBefore = Callable[[str], float]


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of header ``name``, decoded, or ``None``."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


def delayed_at(headers: list[tuple[str, bytes]] | None) -> float:
    """When a tier record first entered the tiers (0 when its header is missing or unreadable)."""
    try:
        return float(header(headers, DELAYED_AT_HEADER) or 0.0)
    except ValueError:
        return 0.0


def delayed_record(names: TopicNames, message: Message, body: bytes, now: float, delayed_at: float) -> Record:
    """The tier record holding ``message`` until it is due."""
    tier = names.tier_for(message.available_at - now)
    return Record(
        names.tier_topic(message.queue, tier),
        body,
        key=record_key(message),
        headers=[
            (QUEUE_HEADER, message.queue.encode()),
            (DELAYED_AT_HEADER, repr(delayed_at).encode()),
        ],
    )


@dataclass
class _Window:
    """Records of one tier partition read but not yet forwarded."""

    heap: list[tuple[float, int, Any, Message]] = field(default_factory=list)
    unfinished: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    committed: int | None = None
    paused: bool = False
    #: The group's committed offset when the partition was assigned (where reading starts), if any.
    start: int | None = None
    #: Whether the last check found the partition read from beyond the end of its log.
    beyond: bool = False

    def finish(self, offset: int) -> None:
        self.done.add(offset)
        while self.unfinished and self.unfinished[0] in self.done:
            self.done.discard(self.unfinished.popleft())

    def commit_point(self, next_offset: int) -> int:
        return self.unfinished[0] if self.unfinished else next_offset


class DelayForwarder:
    """Moves due records from the tier topics to the next tier or their queue."""

    def __init__(
        self,
        *,
        queue: str,
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
        self.queue = queue
        self.topics = names.tier_topics(queue)
        self.group = names.delays_group(queue)
        self._windows: dict[Key, _Window] = {}
        self._next: dict[Key, int] = {}
        self._stop = threading.Event()
        self._lost = False
        self._last_check = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the forwarding thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self.admin.ensure(self.topics.values())
            self._thread = threading.Thread(
                target=quiet(self._run), name=f"jobs-kafka-delays-{self.queue}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (without waiting)."""
        self._stop.set()

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
                    list(self.topics.values()),
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
                while not self._stop.is_set():
                    if self._lost:
                        self._join_again(consumer)
                    self._step(consumer)
                self._commit(consumer)
            except (JobsError, KafkaException) as exc:
                log.warning("delay forwarder error (restarting in 1 s): %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("delay forwarder of queue %s failed (restarting in 1 s)", self.queue)
                self._stop.wait(1.0)
            finally:
                self._windows.clear()
                self._next.clear()
                try:
                    consumer.close()
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the delay forwarder consumer: %s", exc)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        starts = assignment_starts(consumer, partitions, self.settings.timeout)
        fresh: list[TopicPartition] = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key not in self._windows:  # a partition assigned again keeps its unforwarded records
                self._windows[key] = _Window(start=starts.get(key))
                self._next.pop(key, None)
                fresh.append(tp)
        resume_fresh(consumer, fresh)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            self._commit(consumer, keys)
        finally:
            for key in keys:
                self._windows.pop(key, None)
                self._next.pop(key, None)

    def _join_again(self, consumer: Any) -> None:
        """After the group forgot this member: re-create the tier topics if they vanished
        (a broker lost its data), and join again so that they are assigned.
        """
        self._lost = False
        topics = list(self.topics.values())
        for topic in topics:
            self.admin.forget(topic)
        self.admin.ensure(topics)
        consumer.unsubscribe()
        consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.warning(
            "delay forwarder group %s forgot this member (session timeout, or a broker restarted): "
            "joining again",
            self.group,
        )
        self._lost = True
        for tp in partitions:
            self._windows.pop((tp.topic, tp.partition), None)
            self._next.pop((tp.topic, tp.partition), None)
        # Before anything more is forwarded: a producer that outlived the brokers' state may
        # have its writes acknowledged and dropped (see Writer.renew_all).
        self.writer.renew_all(f"delay forwarder group {self.group} forgot this member")

    def _step(self, consumer: Any) -> None:
        now = time.time()
        wait = 0.1
        heads = [w.heap[0][0] for w in self._windows.values() if w.heap]
        if heads:
            wait = max(0.0, min(wait, min(heads) - now))
        first = consumer.poll(wait)  # returns at the first record (consume waits for all 500)
        for message in [] if first is None else [first, *consumer.consume(499, 0)]:
            self._read(consumer, message)
        if time.monotonic() - self._last_check >= RESET_CHECK_INTERVAL:
            self._check_ends(consumer)
            self._last_check = time.monotonic()
        now = time.time()
        forwards: list[Record] = []
        finished: list[tuple[Key, int]] = []
        for key, window in self._windows.items():
            while window.heap and window.heap[0][0] <= now:
                _, offset, message, decoded = heapq.heappop(window.heap)
                record = self._forward(message, decoded, now)
                if record is not None:
                    forwards.append(record)
                finished.append((key, offset))
        if forwards:
            self.admin.ensure(r.topic for r in forwards)
            self.writer.send(forwards)
        for key, offset in finished:
            self._windows[key].finish(offset)
        if finished:
            self._commit(consumer)
        self._pace(consumer)

    def _read(self, consumer: Any, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("delay forwarder consumer error: %s", error.str())
            return
        key = (message.topic(), message.partition())
        window = self._windows.get(key)
        offset = message.offset()
        if window is None:
            return
        expected = self._next.get(key, window.start)
        if expected is not None and offset < expected:
            # The client went back to an earlier offset on its own: the log was reset
            # (re-created, truncated, or a broker lost it) under auto.offset.reset. Skipping
            # these records as already seen would lose them, and commit the old position.
            window = self._reset(consumer, key, expected, f"the brokers served offset {offset}")
        self._next[key] = offset + 1
        window.unfinished.append(offset)
        try:
            decoded = Message.decode(message.value() or b"")
            tier = self.names.tier_of(key[0]) or 0.0
            leave_at = min(message.timestamp()[1] / 1000.0 + tier, float(decoded.available_at))
        except Exception as exc:  # whatever fails on one record fails that record alone
            queue = header(message.headers(), QUEUE_HEADER) or self.queue
            origin = (key[0], key[1], offset)
            reason = f"malformed message in delay tier: {exc}" if str(exc) else f"malformed message: {exc!r}"
            self.dead_letter(queue, message.value(), reason, origin)
            window.finish(offset)
            return
        heapq.heappush(window.heap, (leave_at, offset, message, decoded))

    def _reset(self, consumer: Any, key: Key, expected: int, what: str) -> _Window:
        """Start the bookkeeping of tier partition ``key`` afresh: its log was reset.

        The records held unforwarded belong to a log that is gone: they are
        written again (to their tier, or to the queue if due) before anything
        of the new log is read or committed.
        """
        log.warning(
            "kafka offset reset on delay tier %s[%d] (group %s): expected offset %d, %s; "
            "the log was truncated or re-created (a broker lost its data?): "
            "writing its %d held records again and reading it from its start",
            key[0],
            key[1],
            self.group,
            expected,
            what,
            len(self._windows[key].heap) if key in self._windows else 0,
        )
        old = self._windows.get(key)
        self.writer.renew_all(f"the log of {key[0]}[{key[1]}] was reset")
        if old is not None and old.heap:
            now = time.time()
            records = [self._forward(m, d, now) for _, _, m, d in sorted(old.heap)]
            kept = [r for r in records if r is not None]
            if kept:
                self.admin.ensure(r.topic for r in kept)
                self.writer.send(kept)
        window = _Window()
        self._windows[key] = window
        self._next.pop(key, None)
        if old is not None and old.paused:
            consumer.resume([TopicPartition(*key)])
        return window

    def _check_ends(self, consumer: Any) -> None:
        """Find tier partitions read from beyond the end of their log, and read them from the start.

        Kafka answers such a fetch with ``OFFSET_OUT_OF_RANGE`` (the client then
        goes back by itself and :meth:`_read` notices); a broker that does not
        would leave the partition, and every delayed job written to it, waiting
        for ever. The end is the high watermark of the last fetch response,
        seen twice in a row a second apart.
        """
        for key, window in list(self._windows.items()):
            position = self._next.get(key, window.start)
            if position is None or position <= 0:
                continue
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            except KafkaException:
                continue
            if high is None or high < 0 or position <= high:
                window.beyond = False
                continue
            if not window.beyond:
                window.beyond = True
                continue
            self._reset(consumer, key, position, f"the log ends at {high}")
            try:
                consumer.seek(TopicPartition(key[0], key[1], OFFSET_BEGINNING))
            except KafkaException as exc:
                log.warning("seek of %s[%d] to its start failed: %s", key[0], key[1], exc)

    def _pace(self, consumer: Any) -> None:
        limit = self.settings.max_in_flight
        for key, window in self._windows.items():
            if not window.paused and len(window.unfinished) >= limit:
                window.paused = True
                consumer.pause([TopicPartition(*key)])
            elif window.paused and len(window.unfinished) < max(1, limit // 2):
                window.paused = False
                consumer.resume([TopicPartition(*key)])

    def _commit(self, consumer: Any, keys: list[Key] | None = None) -> None:
        offsets = []
        for key in keys if keys is not None else list(self._windows):
            window = self._windows.get(key)
            if window is None or key not in self._next:
                continue
            point = window.commit_point(self._next[key])
            if point != window.committed:
                offsets.append(TopicPartition(key[0], key[1], point))
                window.committed = point
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("delay forwarder commit failed (records may be forwarded again): %s", exc)

    def _forward(self, message: Any, decoded: Message, now: float) -> Record | None:
        """The record to write for a due tier record, or ``None`` when its queue was purged."""
        value = message.value() or b""
        headers = message.headers()
        entered = delayed_at(headers)
        if entered < self.purged_before(decoded.queue):
            return None
        if decoded.available_at <= now:
            return Record(self.names.queue(decoded.queue), value, record_key(decoded), key_headers(decoded))
        return delayed_record(self.names, decoded, value, now, entered)
