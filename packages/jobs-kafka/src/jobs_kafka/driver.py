"""The ``kafka`` driver: a job queue on Apache Kafka topics and consumer groups."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from jobs_core import Capability, Driver
from jobs_core.errors import BackendError, BackendUnavailable, OperationTimedOut
from jobs_core.message import Delivery, FailedJob, Message, MessageBatch, QueueStats, ScheduleRecord
from jobs_core.quiet_threads import quiet

from jobs_kafka.consuming import Handle
from jobs_kafka.control import ControlLog
from jobs_kafka.dead import DeadLetters, Origin, clip
from jobs_kafka.delays import DelayForwarder, delayed_at, delayed_record
from jobs_kafka.group_admin import warn_if_renamed
from jobs_kafka.groups import ConsumerSet
from jobs_kafka.keys import key_headers, key_of_record, record_key
from jobs_kafka.logs import read_record
from jobs_kafka.offsets import PartitionOffsets, probe_groups
from jobs_kafka.partitions import Fetched
from jobs_kafka.producing import RECORD_RESERVE, Record, Writer
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames, check_queue

#: How long bulk enqueues reuse the partition list of a queue topic (seconds).
PARTITIONS_TTL = 30.0

#: Seconds a batch of offsets read for ``stats`` keeps answering (see :meth:`KafkaDriver.stats`).
STATS_MAX_AGE = 1.0

log = logging.getLogger("jobs_kafka")


@dataclass
class _Measure:
    """Group lag, delayed and failed jobs of some queues, read at one moment."""

    taken: float
    queues: frozenset[str]
    lag: dict[str, int]
    delayed: dict[str, int]
    failed: Counter[str]
    failed_total: int


class KafkaDriver(Driver):
    """Jobs on Kafka: a topic per queue, consumer groups, per-message acks.

    See the package documentation (``docs/drivers/kafka.md``) for the topic
    layout, the delivery guarantees and the limits.
    """

    name: ClassVar[str] = "kafka"
    schemes: ClassVar[tuple[str, ...]] = ("kafka",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.DELAY,
            Capability.FAILED_STORE,
            Capability.RETRY_FAILED,
            Capability.STATS,
            Capability.PURGE,
            Capability.PRUNE,
            Capability.SCHEDULES,
            Capability.BLOCKING_RESERVE,
            Capability.RAW_INJECTION,
            Capability.ORDERED_KEYS,
            Capability.QUEUE_PAUSE,
        }
    )
    # Not declared: RATE_LIMITS and CONCURRENCY_LIMITS. A window or a slot must be
    # taken atomically by any of many processes; the log gives order, not
    # compare-and-set, so a taker would have to write and read back through the
    # control topic for each batch (hundreds of milliseconds), and a slot held by
    # a crashed process could not expire by lease without a clock the log lacks.

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self.settings = KafkaSettings.parse(url, options)
        self.names = TopicNames(self.settings)
        self.admin = TopicAdmin(self.settings)
        self.writer = Writer(self.settings)
        #: The largest encoded job ``enqueue`` accepts: the producers' ``message.max.bytes``
        #: less :data:`~jobs_kafka.producing.RECORD_RESERVE` for the record's framing and headers.
        self.max_message_bytes = self.writer.max_record_bytes - RECORD_RESERVE
        self.consumer = ConsumerSet(self.settings, recreate=self._recreate)
        self._partition_cache: dict[str, tuple[float, list[int]]] = {}
        self.dead = DeadLetters(
            self.settings, self.names, self.admin, self.writer, limit=self.writer.max_record_bytes - 128
        )
        self.control = ControlLog(self.settings, self.names, self.admin, self.writer)
        self._forwarders: dict[str, DelayForwarder] = {}
        self._queue_of: dict[str, str] = {}
        self._close_lock = threading.Lock()
        self._listed: tuple[float, frozenset[str]] = (-STATS_MAX_AGE, frozenset())
        self._last_measure: _Measure | None = None
        #: A worker told to stop when the queue is empty, once :meth:`settled` (its groups
        #: joined, its partitions read to their ends), still waits this long for more.
        self.reserve_settle_time = 1.5

    @classmethod
    def from_config(cls, url: str | None = None, options: Mapping[str, Any] | None = None) -> Driver:
        """``kafka://host:port?...`` and/or ``brokers=..., group_id=..., config={...}``."""
        return cls(url, **dict(options or {}))

    def __repr__(self) -> str:
        return (
            f"<KafkaDriver kafka brokers={self.settings.bootstrap} group_id={self.settings.group_id!r} "
            f"topic_prefix={self.settings.topic_prefix!r}>"
        )

    # -- enqueue ---------------------------------------------------------------

    def _records(self, messages: Sequence[Message], bodies: list[bytes]) -> list[Record]:
        now = time.time()
        records = []
        topics: dict[str, str] = {}
        for message, body in zip(messages, bodies, strict=True):
            if message.available_at > now:
                records.append(delayed_record(self.names, message, body, now, now))
            else:
                topic = topics.get(message.queue)
                if topic is None:
                    topic = topics[message.queue] = self.names.queue(message.queue)
                if message.key is None:
                    records.append(Record(topic, body))
                else:
                    records.append(Record(topic, body, record_key(message), key_headers(message)))
        return records

    def _queue_record(self, message: Message, body: bytes) -> Record:
        """The record of ``message`` in its queue topic (with its ordering key)."""
        return Record(self.names.queue(message.queue), body, record_key(message), key_headers(message))

    def _send(self, records: list[Record]) -> None:
        self._changed()
        self.admin.ensure({r.topic for r in records})
        highest: dict[tuple[str, int], int] = {}
        for topic, partition, offset in self.writer.send(records):
            if offset > highest.get((topic, partition), -1):
                highest[(topic, partition)] = offset
        for (topic, partition), offset in highest.items():
            self.consumer.note_produced(topic, partition, offset)

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        """Write the messages to their queue topics (or delay tiers); returns once all are acknowledged."""
        self._changed()
        self.check_open()
        if isinstance(messages, MessageBatch):
            return self._enqueue_batch(messages)
        try:
            queues = {message.queue for message in messages}
        except TypeError:  # an unhashable queue: check_queue names the problem
            queues = set()
            for message in messages:
                check_queue(message.queue)
        for queue in queues:
            check_queue(queue)
        bodies = self.validate(messages)
        keyed = any(m.key is not None for m in messages)
        if len(queues) == 1 and not keyed and max(m.available_at for m in messages) <= time.time():
            # The bulk path: one topic, nothing delayed, no object per record.
            topic = self.names.queue(next(iter(queues)))
            self.admin.ensure([topic])
            for partition, offset in self.writer.send_values(topic, bodies).items():
                self.consumer.note_produced(topic, partition, offset)
        else:
            self._send(self._records(messages, bodies))
        return [m.id for m in messages]

    def _enqueue_batch(self, batch: MessageBatch) -> list[str | None]:
        """A bulk dispatch: one queue and one due time for all, no message object per job."""
        self._changed()
        queue = check_queue(batch.common["queue"])
        if batch.common["available_at"] > time.time() or batch.common["key"] is not None:
            self._send(self._records(batch, self.validate(batch)))
            return list(batch.ids())
        # Checked whole first (sizes included), then encoded and produced a chunk
        # at a time: librdkafka sends one chunk while the next is encoded.
        self.check_batch(batch)
        topic = self.names.queue(queue)
        self.admin.ensure([topic])
        step = MessageBatch.CHUNK
        chunks = (batch.encoded(start, start + step)[1] for start in range(0, len(batch), step))
        partitions = self._partitions(topic)
        if partitions:
            # Each chunk to one partition in turn, without a delivery report per
            # record: what this process wrote is known by count, not by offset.
            before = self.consumer.next_offsets(topic, partitions)
            counts = self.writer.send_spread(topic, partitions, chunks)
            self.consumer.note_written(topic, counts, before)
        else:  # not in the metadata yet: the producer finds the partitions
            for partition, offset in self.writer.send_chunks(topic, chunks).items():
                self.consumer.note_produced(topic, partition, offset)
        return list(batch.ids())

    def _partitions(self, topic: str) -> list[int]:
        """The partition ids of ``topic`` from metadata read at most every
        :data:`PARTITIONS_TTL` seconds (empty while the brokers do not list it).
        """
        now = time.monotonic()
        cached = self._partition_cache.get(topic)
        if cached is not None and now - cached[0] < PARTITIONS_TTL:
            return cached[1]
        partitions = sorted(self.admin.partitions(topic) or [])
        if partitions:
            self._partition_cache[topic] = (now, partitions)
        return partitions

    def inject_raw(self, queue: str, body: bytes) -> None:
        """Write ``body`` as-is to the queue's topic."""
        self.check_open()
        check_queue(queue)
        self._send([Record(self.names.queue(queue), bytes(body))])

    # -- reserve ---------------------------------------------------------------

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        """Lease up to ``limit`` records of ``queues``.

        The first call for a queue starts joining the consumer group in the
        background and returns after ``timeout`` if the group has not formed
        yet (``OperationTimedOut`` if no assignment arrives within
        ``join_timeout``); :meth:`join` waits for it. Once joined, nothing is
        returned only when every assigned partition was read to its end
        (including this process's own writes), or ``reserve_min_wait`` seconds
        after ``timeout`` if no fetch confirms it, so ``reserve(timeout=0)``
        does not miss stored records.
        """
        self.check_open()
        queues = [check_queue(q) for q in queues]
        topics = [self.names.queue(q) for q in queues]
        if limit <= 0 or not topics:
            return []
        self.admin.ensure(topics)
        if self.consumer.held.intersection(topics):
            self.paused_queues()  # asked for a queue held here as paused: is it still?
        self.consumer.want(topics)
        for queue in queues:
            self._forwarder(queue).start()
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        floor = started + max(timeout, self.settings.reserve_min_wait)
        found: list[Delivery] = []
        while True:
            # Serve the queues in order: until every queue's group is joined and has
            # fetched, wait (briefly) before taking anything.
            settled = len(topics) == 1 or (self.consumer.joined(topics) and self.consumer.started(topics))
            if not settled and time.monotonic() < floor:
                self.consumer.wait(0.02)
                continue
            taken = self.consumer.take(topics, limit - len(found), lease)
            postponed: list[tuple[Delivery, bytes]] = []
            for index, (record, receipt, generation) in enumerate(taken):
                try:
                    delivery = self._delivery(record, receipt, generation, lease, postponed)
                except BaseException:
                    # A poison record could not be moved to the dead-letter topic (the
                    # brokers are down): hand everything back unrun, for the next reserve.
                    for later, later_receipt, later_generation in taken[index:]:
                        handle = (later.topic, later.partition, later.offset, later_generation)
                        self.consumer.give_back(handle, later_receipt)
                    for held in [*found, *(d for d, _ in postponed)]:
                        self.consumer.give_back(self._handle(held), held.receipt)
                    raise
                if delivery is not None:
                    found.append(delivery)
            if postponed:
                self._postpone(postponed, found)
            if found or self._closed:
                return found
            now = time.monotonic()
            if not self.consumer.joined(topics):
                if self.consumer.waiting_for_join(topics) > self.settings.join_timeout:
                    raise OperationTimedOut(
                        f"kafka consumer groups of {', '.join(queues)} on {self.settings.display()} "
                        f"assigned no partitions within {self.settings.join_timeout:g} s"
                    )
                if now >= deadline:
                    return found
            elif now >= deadline and (now >= floor or self.consumer.caught_up(topics)):
                return found
            wait = 0.05
            expiry = self.consumer.next_expiry(topics)
            if expiry is not None:
                wait = min(wait, max(0.0, expiry - time.time()) + 0.001)
            self.consumer.wait(max(0.001, wait))

    def join(self, queues: Sequence[str], timeout: float | None = None) -> bool:
        """Join the consumer groups of ``queues`` and wait until partitions are assigned.

        ``reserve`` joins in the background; call this first where the first
        ``reserve`` must not come back empty because the group was still
        forming (a ``--stop-when-empty`` drain, a benchmark). Returns whether
        every group assigned partitions within ``timeout`` (default
        ``join_timeout``).
        """
        self.check_open()
        topics = [self.names.queue(check_queue(q)) for q in queues]
        self.admin.ensure(topics)
        self.consumer.want(topics)
        for queue in queues:
            self._forwarder(queue).start()
        deadline = time.monotonic() + (self.settings.join_timeout if timeout is None else timeout)
        while not (self.consumer.joined(topics) and self.consumer.started(topics)):
            if time.monotonic() >= deadline:
                return False
            self.consumer.wait(0.05)
        return True

    def settled(self, queues: Sequence[str], timeout: float) -> bool:
        """Whether the groups of ``queues`` assigned their partitions and each one
        assigned here was read to its end (the end its fetch reported, past
        every record this process wrote); waits up to ``timeout`` for it.

        Joins the groups first, like :meth:`join`, and raises
        ``OperationTimedOut`` when a group assigns nothing within
        ``join_timeout``: a worker told to stop when empty stops only once
        its queues are read to their ends, however long the join takes.
        """
        self.check_open()
        topics = [self.names.queue(check_queue(q)) for q in queues]
        if not topics:
            return True
        self.admin.ensure(topics)
        self.consumer.want(topics)
        for queue in queues:
            self._forwarder(queue).start()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            joined = self.consumer.joined(topics)
            if joined and self.consumer.caught_up(topics):
                return True
            if not joined and self.consumer.waiting_for_join(topics) > self.settings.join_timeout:
                raise OperationTimedOut(
                    f"kafka consumer groups of {', '.join(queues)} on {self.settings.display()} "
                    f"assigned no partitions within {self.settings.join_timeout:g} s"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.consumer.wait(min(remaining, 0.05))

    def _recreate(self, topics: Sequence[str]) -> None:
        """After a consumer group forgot a member: new producer identities (see
        :meth:`Writer.renew_all`), and ``topics`` created again if they vanished
        (a broker lost its data).
        """
        self.writer.renew_all(f"the consumer group of {', '.join(topics)} forgot this member")
        for topic in topics:
            self.admin.forget(topic)
        self.admin.ensure(topics)

    def _forwarder(self, queue: str) -> DelayForwarder:
        with self._close_lock:
            forwarder = self._forwarders.get(queue)
            if forwarder is None:
                forwarder = DelayForwarder(
                    queue=queue,
                    settings=self.settings,
                    names=self.names,
                    admin=self.admin,
                    writer=self.writer,
                    dead_letter=self._dead_letter_raw,
                    purged_before=self.control.purged_before,
                )
                self._forwarders[queue] = forwarder
                # A new group_id reads the queue from its start: warn if another group did not.
                threading.Thread(
                    target=quiet(warn_if_renamed),
                    args=(self.admin, queue),
                    name="jobs-kafka-groups",
                    daemon=True,
                ).start()
            return forwarder

    def _delivery(
        self,
        record: Fetched,
        receipt: str,
        generation: int,
        lease: float,
        postponed: list[tuple[Delivery, bytes]],
    ) -> Delivery | None:
        """The delivery of a leased record; ``None`` for a malformed one (moved to the
        failed store) or one not due yet (added to ``postponed`` with the body to delay).
        """
        handle: Handle = (record.topic, record.partition, record.offset, generation)
        queue = self._queue_of.get(record.topic)
        if queue is None:
            queue = self._queue_of[record.topic] = self.names.queue_of(record.topic) or ""
        try:
            message = original = Message.decode(record.value or b"")
            if message.queue != queue:
                message = message.replace(queue=queue)
        except Exception as exc:  # whatever fails on one record fails that record alone
            reason = f"malformed message: {exc}" if str(exc) else f"malformed message: {exc!r}"
            self._dead_letter_raw(queue, record.value, reason, handle[:3])
            self.consumer.finish(handle, receipt)
            return None
        if record.key is not None and message.key is None:
            # Written by another service with a record key only: the job keeps it (a retry
            # goes to the same partition).
            key = key_of_record(record.key)
            if key is not None:
                message = message.replace(key=key, key_concurrency=record.limit)
        delivery = Delivery(message, receipt, time.time() + lease, handle)
        due = message.available_at
        if due > message.created_at and due > time.time():
            # Not due yet (written to the queue topic by another service): it waits in the
            # delay tiers, as it is unless the driver changed it; the records behind it run.
            raw = record.value if message is original else None
            postponed.append((delivery, message.encode() if raw is None else raw))
            return None
        return delivery

    def _postpone(self, postponed: list[tuple[Delivery, bytes]], found: list[Delivery]) -> None:
        """Move records not due yet to the delay tiers, then finish them in the queue topic.

        A failed write hands them and ``found`` back unrun (they are read again).
        """
        now = time.time()
        try:
            self._send([delayed_record(self.names, d.message, body, now, now) for d, body in postponed])
        except BaseException:
            for held in [*found, *(d for d, _ in postponed)]:
                self.consumer.give_back(self._handle(held), held.receipt)
            raise
        self.consumer.finish_many([(self._handle(d), d.receipt) for d, _ in postponed])
        log.debug("%d records of queue topics not due yet moved to the delay tiers", len(postponed))

    def _dead_letter_raw(self, queue: str, value: bytes | None, reason: str, origin: Origin) -> None:
        self.dead.write([self.dead.raw_record(queue, value, reason, origin)])

    # -- finishing ---------------------------------------------------------------

    @staticmethod
    def _handle(delivery: Delivery) -> Handle:
        handle = delivery.handle
        if not (isinstance(handle, tuple) and len(handle) == 4):
            raise BackendError(f"delivery {delivery.id} was not reserved from a kafka driver")
        return handle

    def ack(self, delivery: Delivery) -> None:
        """Mark done; its offset is committed once every earlier offset is done."""
        self._changed()
        self.consumer.finish(self._handle(delivery), delivery.receipt)

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Mark several deliveries done under one lock."""
        self._changed()
        self.consumer.finish_many([(self._handle(d), d.receipt) for d in deliveries])

    def _held(self, delivery: Delivery) -> bool:
        return self.consumer.holds(self._handle(delivery), delivery.receipt)

    def _republish(self, delivery: Delivery, message: Message) -> None:
        if not self._held(delivery):
            return
        self.check_open()
        body = message.encode()
        while len(body) > self.max_message_bytes and message.last_error:
            # The error text made the job too large to write again: keep what fits of it.
            excess = len(body) - self.max_message_bytes
            size = len(json.dumps(message.last_error))  # escapes make it longer than its characters
            keep = (size - excess - 100) * len(message.last_error) // size
            message = message.replace(last_error=clip(message.last_error, keep) if keep > 0 else None)
            body = message.encode()
        if len(body) > self.max_message_bytes:
            error = (
                f"the job cannot be written again: {len(body)} bytes with its retry fields, "
                f"over the {self.max_message_bytes}-byte limit (message.max.bytes)"
            )
            self.fail(delivery, error + (f"\n{message.last_error}" if message.last_error else ""))
            return
        self._send(self._records([message], [body]))
        self.consumer.finish(self._handle(delivery), delivery.receipt)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Write the message again (attempts + 1, ``last_error``), due after ``delay``."""
        message = delivery.message.replace(
            attempts=delivery.message.attempts + 1,
            last_error=error,
            available_at=time.time() + max(0.0, delay),
        )
        self._republish(delivery, message)

    def release(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Give the message back unrun: at the head of its partition, or through a delay tier."""
        self._changed()
        if delay <= 0:
            self.consumer.give_back(self._handle(delivery), delivery.receipt)
            return
        self._republish(delivery, delivery.message.replace(available_at=time.time() + delay))

    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease; ``False`` once it expired or the partition was revoked."""
        return self.consumer.extend(self._handle(delivery), delivery.receipt, lease)

    def fail(self, delivery: Delivery, error: str) -> None:
        """Write the message (attempts + 1) to the dead-letter topic with its origin, then finish it."""
        self._changed()
        if not self._held(delivery):
            return
        self.check_open()
        handle = self._handle(delivery)
        message = delivery.message.replace(attempts=delivery.message.attempts + 1, last_error=error)
        self.dead.write([self.dead.failed_record(message, error, handle[:3])])
        self.consumer.finish(handle, delivery.receipt)

    # -- administration ----------------------------------------------------------

    def queues(self) -> list[str]:
        """Queues with a topic under this prefix (a queue topic, or delay tiers holding its delayed jobs).

        The next ``stats`` calls (for these queues, or all) within
        :data:`STATS_MAX_AGE` seconds are answered from one batch of requests.
        """
        self.check_open()
        topics = self.admin.list_topics()
        found = sorted({q for q in (self.names.owner_of(topic) for topic in topics) if q})
        with self._close_lock:
            self._listed = (time.monotonic(), frozenset(found))
        return found

    def _offsets(self, queues: Sequence[str]) -> list[PartitionOffsets]:
        """Where each queue's group stands on every partition of the queue's topic."""
        topics = self.admin.list_topics()
        requests: dict[str, list[tuple[str, int]]] = {}
        for queue in queues:
            topic = self.names.queue(queue)
            if topics.get(topic):
                self.consumer.flush_commits(topic)
                requests[self.consumer.group_of(topic)] = [(topic, p) for p in topics[topic]]
        return probe_groups(self.settings, self.admin.client, requests)

    def _pending(self, queue: str, offsets: Sequence[PartitionOffsets]) -> tuple[int, int]:
        """``(pending, reserved)`` of ``queue``: the group's lag less what this process holds."""
        topic = self.names.queue(queue)
        lag = sum(o.lag for o in offsets if o.topic == topic)
        return self._local(topic, lag)

    def _local(self, topic: str, lag: int) -> tuple[int, int]:
        """``(pending, reserved)`` from a group's ``lag``, less the leases and finished work held here."""
        _, leased, done = self.consumer.local_counts(topic)
        return max(0, lag - leased - done), leased

    def _delayed(self, queues: Sequence[str]) -> int:
        """Delayed jobs of ``queues``: the lag of their delay forwarders' groups."""
        return sum(self._measure(queues).delayed.values())

    def _measure(self, queues: Sequence[str]) -> _Measure:
        """Group lag, delayed and failed jobs of ``queues``, from one batch of requests.

        One metadata request; the committed offsets of every queue group and
        delay-forwarder group (one request per group, all in flight at once)
        and one fetch of every partition for the high watermarks, while the
        control log (purge marks) and the failed store are read alongside.
        After a purge of a queue its tier backlog is read, and only records
        that entered the tiers after the purge are counted.
        """
        topics = self.admin.list_topics()
        requests: dict[str, list[tuple[str, int]]] = {}
        tiers: dict[str, list[tuple[str, int]]] = {}
        queue_of_group: dict[str, str] = {}
        for queue in queues:
            topic = self.names.queue(queue)
            if topics.get(topic):
                self.consumer.flush_commits(topic)
                requests[self.consumer.group_of(topic)] = [(topic, p) for p in topics[topic]]
            keys = [(t, p) for t in self.names.tier_topics(queue).values() for p in topics.get(t, [])]
            if keys:
                group = self.names.delays_group(queue)
                queue_of_group[group] = queue
                tiers[group] = keys
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="jobs-kafka-stats") as pool:
            marks_read = pool.submit(self.control.refresh)
            failed_read = pool.submit(self.dead.current)
            offsets = probe_groups(self.settings, self.admin.client, {**requests, **tiers})
            marks_read.result()
            failed = failed_read.result()
        lag = dict.fromkeys(queues, 0)
        delayed = dict.fromkeys(queues, 0)
        marks = {group: self.control.purged_before(queue) for group, queue in queue_of_group.items()}
        marked = {group: keys for group, keys in tiers.items() if marks[group]}
        for o in offsets:
            if o.group in queue_of_group:
                if o.group not in marked:
                    delayed[queue_of_group[o.group]] += o.lag
            else:
                owner = self.names.queue_of(o.topic)
                if owner is not None and owner in lag:
                    lag[owner] += o.lag
        if marked:

            def count(group: str, record: Any) -> None:
                if delayed_at(record.headers()) >= marks[group]:
                    delayed[queue_of_group[group]] += 1

            probe_groups(self.settings, self.admin.client, marked, scan=count)
        by_queue = Counter(f.queue for f in failed)
        return _Measure(time.monotonic(), frozenset(queues), lag, delayed, by_queue, len(failed))

    def _measured(self, queue: str | None) -> _Measure:
        """The measure that answers ``stats(queue)``: a recent one of the listed queues, or a new one."""
        now = time.monotonic()
        with self._close_lock:
            listed, last = self._listed, self._last_measure
        fresh = last is not None and now - last.taken < STATS_MAX_AGE
        if last is not None and fresh and (queue is None or queue in last.queues):
            return last
        if queue is not None and not (now - listed[0] < STATS_MAX_AGE and queue in listed[1]):
            return self._measure([queue])  # one queue asked on its own: measured alone, not kept
        queues = self.queues() if queue is None else sorted(listed[1])
        measure = self._measure(queues)
        with self._close_lock:
            self._last_measure = measure
        return measure

    def _changed(self) -> None:
        """Make the next ``stats`` measure again (this process wrote or finished something)."""
        self._last_measure = None

    def stats(self, queue: str | None = None) -> QueueStats:
        """Pending (group lag), delayed (tier backlog), reserved (leases of this process), failed.

        Right after :meth:`queues` (within :data:`STATS_MAX_AGE` seconds),
        the listed queues are measured in one batch of requests, which also
        answers the next ``stats`` calls for them (as ``jobs stats`` makes,
        one per queue and one for the total) until that age or until this
        process writes or finishes a job.
        """
        self.check_open()
        if queue is not None:
            check_queue(queue)
        measure = self._measured(queue)
        names = [queue] if queue is not None else sorted(measure.queues)
        pending = reserved = delayed = 0
        for name in names:
            waiting, leased = self._local(self.names.queue(name), measure.lag.get(name, 0))
            pending += waiting
            reserved += leased
            delayed += measure.delayed.get(name, 0)
        return QueueStats(
            pending=pending,
            delayed=delayed,
            reserved=reserved,
            completed=None,
            failed=measure.failed_total if queue is None else measure.failed[queue],
        )

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs from the dead-letter topic, newest first."""
        self.check_open()
        entries = [f for f in reversed(self.dead.current()) if queue is None or f.queue == queue]
        return entries[offset : offset + limit]

    def retry_failed(self, failed_id: str) -> bool:
        """Write the failed job back to its queue (attempts reset) and remove it from the failed store."""
        self.check_open()
        entry = self.dead.get(failed_id)
        if entry is None:
            return False
        cut = self.dead.truncation(failed_id)
        if cut is not None:
            body = self._original(failed_id, *cut)
            if entry.name:  # a job that failed: its original record, attempts reset
                original = Message.decode(body).replace(attempts=0, available_at=time.time())
                self._send([self._queue_record(original, original.encode())])
            else:  # an undecodable record: its bytes as they were
                self._send([Record(self.names.queue(check_queue(entry.queue)), body)])
        elif entry.message is not None:
            message = entry.message.replace(attempts=0, available_at=time.time())
            self._send([self._queue_record(message, message.encode())])
        else:
            check_queue(entry.queue)
            self._send([Record(self.names.queue(entry.queue), (entry.raw or "").encode())])
        self.dead.resolve(failed_id)
        return True

    def _original(self, failed_id: str, size: int, sha256: str, origin: Origin | None) -> bytes:
        """The whole body of a failed job stored truncated, read back from its origin record."""
        problem = "it has no origin"
        if origin is not None:
            value = read_record(self.settings, *origin)
            if value is None:
                problem = f"its record {origin[0]}[{origin[1]}] at offset {origin[2]} is gone (retention)"
            elif hashlib.sha256(value).hexdigest() == sha256:
                return value
            else:
                try:
                    if Message.decode(value).id == failed_id:
                        return value
                except Exception:  # not a job at all: reported below
                    pass
                problem = f"its record {origin[0]}[{origin[1]}] at offset {origin[2]} holds another job"
        raise BackendError(
            f"failed job {failed_id} was stored truncated ({size} bytes, sha256 {sha256}) "
            f"and cannot be replayed: {problem}"
        )

    def forget_failed(self, failed_id: str) -> bool:
        """Remove one failed job from the store."""
        self._changed()
        self.check_open()
        if self.dead.get(failed_id) is None:
            return False
        self.dead.resolve(failed_id)
        return True

    def purge(self, queue: str) -> int:
        """Skip the group past every waiting record of ``queue`` and drop its delayed jobs.

        Moves the group's committed offsets to the high watermarks (records
        are not deleted; a group that never consumed the topic starts after
        them too). Returns how many pending and delayed jobs were removed.
        """
        self._changed()
        self.check_open()
        check_queue(queue)
        delayed = self._delayed([queue])
        self.control.mark_purge(queue, time.time())
        offsets = self._offsets([queue])
        if not offsets:
            return delayed
        pending, _ = self._pending(queue, offsets)
        local = self.consumer.skip_to({(o.topic, o.partition): o.high for o in offsets})
        remote = [o for o in offsets if (o.topic, o.partition) not in local and o.lag > 0]
        group = self.consumer.group_of(self.names.queue(queue))
        if remote:
            request = ConsumerGroupTopicPartitions(
                group,
                [TopicPartition(o.topic, o.partition, o.high) for o in remote],
            )
            try:
                futures = self.admin.client.alter_consumer_group_offsets([request])
                for future in futures.values():
                    future.result(timeout=self.settings.timeout)
            except KafkaException as exc:
                raise BackendUnavailable(
                    f"kafka brokers {self.settings.display()} refused to move the offsets of group "
                    f"{group!r} (stop the group's members elsewhere to purge): {exc}"
                ) from exc
        return pending + delayed

    def prune(self, older_than: float) -> int:
        """Remove failed jobs that failed more than ``older_than`` seconds ago; return how many.

        Kafka keeps no record of completed jobs (queue topics expire by
        retention), so only the failed store is pruned.
        """
        self._changed()
        self.check_open()
        cutoff = time.time() - older_than
        old = [f.id for f in self.dead.current() if f.failed_at < cutoff]
        self.dead.resolve_many(old)
        return len(old)

    # -- schedules ---------------------------------------------------------------

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace the schedule (a record in the control topic)."""
        self.check_open()
        self.control.save(record)

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        self.check_open()
        return self.control.all()

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule."""
        self.check_open()
        return self.control.remove(name)

    def claim_tick(self, name: str, tick: float) -> bool:
        """Claim a tick: the first claim in the control log wins."""
        self.check_open()
        return self.control.claim(name, tick)

    # -- pause flags ----------------------------------------------------------------

    def pause_queue(self, queue: str) -> bool:
        """Write the queue's pause flag to the control topic."""
        self.check_open()
        changed = self.control.set_paused(check_queue(queue), True)
        self.paused_queues()
        return changed

    def resume_queue(self, queue: str) -> bool:
        """Remove the queue's pause flag (a tombstone in the control topic)."""
        self.check_open()
        changed = self.control.set_paused(check_queue(queue), False)
        self.paused_queues()
        return changed

    def paused_queues(self) -> list[str]:
        """The paused queues; this process's consumers pause the partitions of theirs."""
        self.check_open()
        paused = self.control.paused_queues()
        self.consumer.hold(self.names.queue(q) for q in paused)
        return paused

    # -- lifecycle ---------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless the brokers answer."""
        self.check_open()
        self.admin.list_topics()

    def close(self) -> None:
        """Stop fetching, commit finished work, leave the group, flush writes. Safe twice."""
        with self._close_lock:
            if self._closed:
                return
            super().close()
        self.consumer.close()
        with self._close_lock:
            forwarders = list(self._forwarders.values())
        for forwarder in forwarders:
            forwarder.stop()
        for forwarder in forwarders:
            forwarder.close()
        self.dead.close()
        self.control.close()
        self.writer.close()
