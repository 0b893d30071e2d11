"""The queue consumer: a background poll loop in the consumer group, and leases.

One thread owns the confluent-kafka ``Consumer``. It polls all the time, so
heartbeats and rebalances proceed however long a job runs (no
``max.poll.interval.ms`` eviction), and buffers fetched records per
partition, at most ``max_in_flight`` unfinished ones each: while every window
is full it takes nothing from librdkafka's queue (librdkafka keeps
prefetching), and a window full for ``PAUSE_AFTER`` seconds has its partition
paused. It commits, per partition, the lowest unfinished offset every
``commit_interval`` (50 ms by default). Worker threads take leases from the buffers and finish
them; the thread never runs jobs.

On revoke, a partition stops handing out records, waits up to
``rebalance_grace`` seconds for its leased records to finish, commits what
is finished and is dropped: the deliveries still leased become stale (their
ack is ignored, ``extend`` returns ``False``), and the new owner runs them
again from the committed offset. A lease that ends un-acked puts the record
back at the head of its partition's buffer, for the next ``reserve`` of this
process.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from jobs_core.errors import BackendUnavailable
from jobs_core.quiet_threads import quiet

from jobs_kafka.keys import key_concurrency
from jobs_kafka.offsets import assignment_starts, resume_fresh
from jobs_kafka.partitions import Fetched, Lease, PartitionState
from jobs_kafka.settings import KafkaSettings

log = logging.getLogger("jobs_kafka.consumer")

Key = tuple[str, int]
#: What a delivery's ``handle`` holds: topic, partition, offset, assignment generation.
Handle = tuple[str, int, int, int]
#: Most records taken from librdkafka's queue per poll.
FETCH_BATCH = 1000
#: Seconds a partition's window must stay full, with jobs of it running, before the partition is paused.
PAUSE_AFTER = 0.5
#: Seconds a window full of records that no job has taken yet must stay so before the
#: partition is paused: a worker between its group join and its first reserve, or
#: busy with another queue, takes them soon, and a pause would throw away what
#: librdkafka prefetched (fetched again on resume, a stall of 0.1-0.3 s seen at
#: every start of a drain that paused).
IDLE_PAUSE_AFTER = 5.0
#: Seconds between checks that no partition is read from beyond the end of its log.
RESET_CHECK_INTERVAL = 1.0
#: Re-creates topics that may have vanished (a broker that lost its data).
Recreate = Callable[[Sequence[str]], None]


class QueueConsumer:
    """Fetches queue topics in the consumer group and leases their records."""

    def __init__(
        self,
        settings: KafkaSettings,
        group: str,
        cond: threading.Condition | None = None,
        produced: dict[Key, int] | None = None,
        recreate: Recreate | None = None,
    ) -> None:
        self.settings = settings
        self.recreate = recreate
        self._rejoin = False
        #: Partitions seen read from beyond their end by the last check, and their generation.
        self._beyond: dict[Key, int] = {}
        self.group = group
        self.cond = cond if cond is not None else threading.Condition()
        self.parts: dict[Key, PartitionState] = {}
        self._wanted: set[str] = set()
        self._subscribed: frozenset[str] = frozenset()
        self._joined: set[str] = set()
        self._produced: dict[Key, int] = produced if produced is not None else {}
        self._generation = itertools.count(1)
        self._receipts = itertools.count(1)
        self._commit_requests = 0
        self._commits_done = 0
        self._stopping = False
        self._join_started: float | None = None
        self._seeks: list[TopicPartition] = []
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        #: Whether the queue is paused (``Jobs.pause_queue``): its partitions are paused
        #: in librdkafka, so nothing more is fetched until it is resumed.
        self.held = False

    # -- called by the driver ------------------------------------------------

    def want(self, topics: Iterable[str]) -> None:
        """Make sure the group subscription covers ``topics`` (starts the poll loop)."""
        with self.cond:
            if self.error is not None:
                raise self.error
            new = set(topics) - self._wanted
            if new:
                self._wanted |= new
                if self._join_started is None:
                    self._join_started = time.monotonic()
                self.cond.notify_all()
            if self._thread is None:
                self._consumer = Consumer(
                    self.settings.consumer_config(self.group, on_commit=self._on_commit)
                )
                self._thread = threading.Thread(
                    target=quiet(self._run), name=f"jobs-kafka-consumer-{self.group}", daemon=True
                )
                self._thread.start()

    def waiting_for_join(self) -> float:
        """Seconds since the subscription last changed without an assignment since (0 if joined)."""
        with self.cond:
            if self._join_started is None:
                return 0.0
            return time.monotonic() - self._join_started

    def joined(self, topics: Sequence[str]) -> bool:
        """Whether the group assigned partitions since ``topics`` were subscribed."""
        with self.cond:
            return all(topic in self._joined for topic in topics)

    def caught_up(self, topics: Sequence[str]) -> bool:
        """Whether every assigned partition of ``topics`` was read to its end.

        The end is the last end-of-partition event, which must lie past every
        record fetched and every record this process wrote.
        """
        wanted = set(topics)
        with self.cond:
            for key, state in self.parts.items():
                if key[0] not in wanted:
                    continue
                end = state.eof_offset
                if end < 0 or end <= self._produced.get(key, -1):
                    return False
                if state.next_offset is not None and end < state.next_offset:
                    return False
            return True

    def started(self, topics: Sequence[str]) -> bool:
        """Whether every assigned partition of ``topics`` returned records or reached its end."""
        wanted = set(topics)
        with self.cond:
            return all(
                state.eof_offset >= 0 or state.next_offset is not None
                for key, state in self.parts.items()
                if key[0] in wanted
            )

    def note_produced(self, topic: str, partition: int, offset: int) -> None:
        """Remember the highest offset this process wrote to a partition."""
        key = (topic, partition)
        with self.cond:
            if offset > self._produced.get(key, -1):
                self._produced[key] = offset

    def take(self, topics: Sequence[str], limit: int, lease: float) -> list[tuple[Fetched, str, int]]:
        """Lease up to ``limit`` ready records of ``topics`` (in that order).

        Returns ``(record, receipt, generation)`` triples.
        """
        taken: list[tuple[Fetched, str, int]] = []
        now = time.time()
        with self.cond:
            if self.error is not None:
                raise self.error
            for topic in topics:
                states = [s for (t, _), s in self.parts.items() if t == topic and not s.revoking]
                for state in states:
                    state.expire(now)
                progress = True
                expires_at = now + lease
                while len(taken) < limit and progress:
                    progress = False
                    for state in states:
                        record = state.pop_runnable()
                        if record is None:
                            continue
                        receipt = f"{state.generation}.{next(self._receipts)}"
                        state.lease(record, receipt, expires_at)
                        taken.append((record, receipt, state.generation))
                        progress = True
                        if len(taken) >= limit:
                            break
                if len(taken) >= limit:
                    break
        return taken

    def wait(self, seconds: float) -> None:
        """Sleep until new records arrive or ``seconds`` pass."""
        with self.cond:
            self.cond.wait(seconds)

    def next_expiry(self, topics: Sequence[str]) -> float | None:
        """When the earliest lease on ``topics`` ends (wall clock)."""
        wanted = set(topics)
        with self.cond:
            times = [s.next_expiry() for (t, _), s in self.parts.items() if t in wanted]
        return min((t for t in times if t is not None), default=None)

    def _owned(self, handle: Handle, receipt: str) -> tuple[PartitionState, Lease] | None:
        topic, partition, offset, generation = handle
        state = self.parts.get((topic, partition))
        if state is None or state.generation != generation:
            return None
        lease = state.leases.get(offset)
        if lease is None or lease.receipt != receipt:
            return None
        return state, lease

    def holds(self, handle: Handle, receipt: str) -> bool:
        """Whether the lease is still held (not expired, not revoked)."""
        with self.cond:
            owned = self._owned(handle, receipt)
            return owned is not None and owned[1].expires_at > time.time()

    def finish(self, handle: Handle, receipt: str) -> bool:
        """Mark a leased record done; ``False`` if the lease was lost."""
        with self.cond:
            owned = self._owned(handle, receipt)
            if owned is None:
                return False
            state, _ = owned
            state.unlease(handle[2])
            state.finish(handle[2])
            self.cond.notify_all()
            return True

    def finish_many(self, items: Sequence[tuple[Handle, str]]) -> None:
        """Mark several leased records done under one lock."""
        with self.cond:
            for handle, receipt in items:
                owned = self._owned(handle, receipt)
                if owned is not None:
                    state, _ = owned
                    state.unlease(handle[2])
                    state.finish(handle[2])
            self.cond.notify_all()

    def give_back(self, handle: Handle, receipt: str) -> bool:
        """Put a leased record back at the head of its partition, unrun."""
        with self.cond:
            owned = self._owned(handle, receipt)
            if owned is None:
                return False
            state, lease = owned
            state.unlease(handle[2])
            state.push_back(lease.record)
            self.cond.notify_all()
            return True

    def extend(self, handle: Handle, receipt: str, seconds: float) -> bool:
        """Renew a lease; ``False`` if it was lost (expired, revoked or finished)."""
        with self.cond:
            owned = self._owned(handle, receipt)
            if owned is None:
                return False
            now = time.time()
            if owned[1].expires_at <= now:
                return False
            owned[0].renew(owned[1], now + seconds)
            return True

    def local_counts(self, topic: str) -> tuple[int, int, int]:
        """``(ready, leased, finished but not committable)`` records of ``topic`` held here."""
        ready = leased = done = 0
        now = time.time()
        with self.cond:
            for (t, _), state in self.parts.items():
                if t != topic:
                    continue
                live = sum(1 for lease in state.leases.values() if lease.expires_at > now)
                ready += state.pending_here() + len(state.leases) - live
                leased += live
                done += state.done_uncommitted()
        return ready, leased, done

    def skip_to(self, targets: dict[Key, int]) -> set[Key]:
        """Drop the waiting records below ``targets`` on the partitions held here.

        Leased records stay leased. Returns the partitions handled here; the
        others belong to other members of the group.
        """
        handled: set[Key] = set()
        with self.cond:
            for key, target in targets.items():
                state = self.parts.get(key)
                if state is None or state.revoking:
                    continue
                handled.add(key)
                state.unblock()
                kept = []
                while (record := state.pop_ready()) is not None:
                    if record.offset < target:
                        state.finish(record.offset)
                    else:
                        kept.append(record)
                for record in kept:
                    state.push_back(record)
                if state.next_offset is None or state.next_offset < target:
                    state.next_offset = target
                    self._seeks.append(TopicPartition(key[0], key[1], target))
            self.cond.notify_all()
        if handled:
            self.flush_commits(self.settings.timeout)
        return handled

    def flush_commits(self, timeout: float) -> None:
        """Commit finished work now (synchronously, by the poll thread)."""
        with self.cond:
            if self._thread is None or self.error is not None:
                return
            self._commit_requests += 1
            target = self._commit_requests
            self.cond.notify_all()
            deadline = time.monotonic() + timeout
            while self._commits_done < target and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.cond.wait(remaining)

    def stop(self) -> None:
        """Ask the poll thread to stop (without waiting)."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()

    def close(self) -> None:
        """Stop fetching, commit finished work, leave the group. Safe to call twice."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.settings.timeout + self.settings.rebalance_grace + 5)

    # -- the poll thread -------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        last_commit = last_check = time.monotonic()
        # Never wait for records past the next commit: finished work is committed
        # within commit_interval of being acknowledged.
        poll_wait = min(0.05, self.settings.commit_interval)
        try:
            while True:
                with self.cond:
                    if self._stopping:
                        break
                    wanted = frozenset(self._wanted)
                    commit_now = self._commit_requests > self._commits_done
                    target = self._commit_requests
                    rejoin, self._rejoin = self._rejoin, False
                if rejoin:
                    self._join_again(consumer, wanted)
                if wanted != self._subscribed:
                    with self.cond:
                        self._joined -= wanted - self._subscribed
                    consumer.subscribe(
                        sorted(wanted),
                        on_assign=self._on_assign,
                        on_revoke=self._on_revoke,
                        on_lost=self._on_lost,
                    )
                    self._subscribed = wanted
                with self.cond:
                    seeks, self._seeks = self._seeks, []
                for tp in seeks:
                    try:
                        consumer.seek(tp)
                    except KafkaException as exc:
                        log.debug("seek of %s[%d] skipped: %s", tp.topic, tp.partition, exc)
                room = self._room()
                if room > 0:
                    messages = self._fetch(consumer, min(room, FETCH_BATCH), poll_wait)
                    if messages:
                        self._buffer(messages)
                else:
                    # Every window is full: leave the records in librdkafka's queue (it keeps
                    # them, unlike a pause) until the worker finishes some.
                    with self.cond:
                        if not self._stopping and self._commit_requests == target:
                            self.cond.wait(0.02)
                self._pace(consumer)
                now = time.monotonic()
                if now - last_check >= RESET_CHECK_INTERVAL:
                    self._check_ends(consumer)
                    last_check = now
                if commit_now or now - last_commit >= self.settings.commit_interval:
                    self._commit(consumer, synchronous=commit_now)
                    last_commit = now
                    if commit_now:
                        with self.cond:
                            self._commits_done = max(self._commits_done, target)
                            self.cond.notify_all()
        except BaseException as exc:  # the error is raised again by the next reserve
            log.exception("the kafka consumer thread stopped")
            with self.cond:
                self.error = BackendUnavailable(
                    f"the kafka consumer for {self.settings.display()} stopped: {exc}"
                )
                self.error.__cause__ = exc
        finally:
            try:
                self._commit(consumer, synchronous=True)
            finally:
                try:
                    consumer.close()
                except (KafkaException, RuntimeError) as exc:
                    log.warning("closing the kafka consumer: %s", exc)
                with self.cond:
                    self.parts.clear()
                    self._stopping = True
                    self.cond.notify_all()

    @staticmethod
    def _fetch(consumer: Any, limit: int, timeout: float) -> list[Any]:
        """Up to ``limit`` records: waits up to ``timeout`` for the first one only.

        ``consume(n, timeout)`` waits until it has ``n`` records or the timeout
        passed, so a lone job waited the whole timeout (50 ms) in librdkafka's
        queue; ``poll`` returns at the first, and the rest already fetched follow
        without waiting.
        """
        first = consumer.poll(timeout)
        if first is None:
            return []
        if limit <= 1:
            return [first]
        return [first, *consumer.consume(limit - 1, 0)]

    def _buffer(self, messages: list[Any]) -> None:
        added = False
        with self.cond:
            for message in messages:
                error = message.error()
                key = (message.topic(), message.partition())
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        state = self.parts.get(key)
                        if state is not None:
                            state.eof_offset = message.offset()
                            added = True
                    elif error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        log.warning("kafka consumer error on %s: %s", key, error.str())
                        if error.fatal():
                            raise KafkaException(error)
                    continue
                state = self.parts.get(key)
                if state is None or state.revoking:
                    continue
                offset = message.offset()
                expected = state.next_offset if state.next_offset is not None else state.start
                if expected is not None and offset < expected:
                    # The client went back to an earlier offset on its own: the log was reset
                    # (truncated, re-created, or a broker lost it) under auto.offset.reset.
                    state = self._reset(key, expected, f"the brokers served offset {offset}")
                record_key = message.key()
                if record_key is None:
                    fetched = Fetched(key[0], key[1], offset, message.value())
                else:  # an ordering key: see partitions.py
                    limit = key_concurrency(message.headers())
                    fetched = Fetched(key[0], key[1], offset, message.value(), record_key, limit)
                if state.add(fetched):
                    added = True
            if added:
                self.cond.notify_all()

    def _reset(self, key: Key, expected: int, what: str) -> PartitionState:
        """Start the bookkeeping of partition ``key`` afresh after its log was reset (lock held).

        Its leases become stale: their records belong to the log that is gone.
        """
        log.warning(
            "kafka offset reset on %s[%d] (group %s): expected offset %d, %s; "
            "the log was truncated or re-created (a broker lost its data?): reading it from its start",
            key[0],
            key[1],
            self.group,
            expected,
            what,
        )
        state = PartitionState(key[0], key[1], next(self._generation))
        self.parts[key] = state
        self.cond.notify_all()
        return state

    def _check_ends(self, consumer: Any) -> None:
        """Find partitions read from beyond the end of their log, and read them from the start.

        Kafka answers such a fetch with ``OFFSET_OUT_OF_RANGE`` (and the client
        resets the offset by itself); a broker that does not would leave the
        partition waiting for ever. The end is the high watermark of the last
        fetch response.
        """
        seeks: list[TopicPartition] = []
        with self.cond:
            keys = [(key, state) for key, state in self.parts.items() if not state.revoking]
        for key, state in keys:
            position = state.next_offset if state.next_offset is not None else state.start
            if position is None or position <= 0:
                continue
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            except KafkaException:
                continue
            if high is None or high < 0 or position <= high:
                self._beyond.pop(key, None)
                continue
            # Seen twice in a row, a second apart: a high watermark cached from an older
            # fetch (a partition assigned again) is renewed by the first fetch in between.
            if self._beyond.get(key) != state.generation:
                self._beyond[key] = state.generation
                continue
            with self.cond:
                if self.parts.get(key) is state:
                    del self._beyond[key]
                    self._reset(key, position, f"the log ends at {high}")
                    seeks.append(TopicPartition(key[0], key[1], OFFSET_BEGINNING))
        for tp in seeks:
            try:
                consumer.seek(tp)
            except KafkaException as exc:
                log.warning("seek of %s[%d] to its start failed: %s", tp.topic, tp.partition, exc)

    def _join_again(self, consumer: Any, wanted: frozenset[str]) -> None:
        """After the group forgot this member: re-create the topics if they vanished, join again.

        A broker that lost its data (a restart of one that keeps nothing)
        forgets the group and the topics; the client rejoins at once and,
        with no topic to assign, is assigned nothing, and does not look again.
        """
        if self.recreate is not None and wanted:
            try:
                self.recreate(sorted(wanted))
            except Exception as exc:  # the next loss of membership tries again
                log.warning("re-creating topics %s: %s", ", ".join(sorted(wanted)), exc)
        consumer.unsubscribe()
        self._subscribed = frozenset()

    def _room(self) -> int:
        """How many records may be taken from librdkafka without overfilling a window.

        The smallest room of the partitions that are fetched (not paused): records
        of every partition share one queue, so none may get more than its room.
        """
        limit = self.settings.max_in_flight
        with self.cond:
            room = FETCH_BATCH
            for state in self.parts.values():
                if not state.paused and not state.revoking:
                    room = min(room, limit - state.in_flight)
            return room

    def _pace(self, consumer: Any) -> None:
        """Pause partitions whose window stayed full, resume those with room, expire leases.

        A pause makes librdkafka drop what it prefetched for the partition and
        fetch it again on resume (and a fetch answered while paused backs off
        ``fetch.error.backoff.ms``), so a window that is full only until the
        worker's next acks is not paused: the poll loop just stops taking
        records. Only a window full for ``PAUSE_AFTER`` seconds while jobs of it
        run (slow jobs) is paused, so that the other partitions and the group's
        events keep flowing; one full of records no job has taken yet (a worker
        still starting) waits ``IDLE_PAUSE_AFTER`` seconds.
        """
        limit = self.settings.max_in_flight
        pause: list[TopicPartition] = []
        resume: list[TopicPartition] = []
        now = time.time()
        clock = time.monotonic()
        with self.cond:
            expired = 0
            for (topic, partition), state in self.parts.items():
                expired += state.expire(now)
                if state.in_flight < limit:
                    state.full_since = None
                elif state.full_since is None or (state.leases and not state.full_busy):
                    # Full, or full and now taken from: from then on it counts as busy
                    # (a moment between a worker's ack and its next reserve does not reset it).
                    state.full_since, state.full_busy = clock, bool(state.leases)
                full_for = -1.0 if state.full_since is None else clock - state.full_since
                wait = PAUSE_AFTER if state.full_busy else IDLE_PAUSE_AFTER
                if not state.paused and (full_for >= wait or self.held):
                    state.paused = True
                    pause.append(TopicPartition(topic, partition))
                elif state.paused and not self.held and state.in_flight < max(1, limit // 2):
                    state.paused = False
                    resume.append(TopicPartition(topic, partition))
            if expired:
                self.cond.notify_all()
        if pause:
            consumer.pause(pause)
        if resume:
            consumer.resume(resume)

    def _commit(self, consumer: Any, synchronous: bool, only: Iterable[Key] | None = None) -> None:
        offsets: list[TopicPartition] = []
        keys = set(only) if only is not None else None
        with self.cond:
            for key, state in self.parts.items():
                if keys is not None and key not in keys:
                    continue
                point = state.commit_point()
                if point is not None and point != state.committed:
                    offsets.append(TopicPartition(key[0], key[1], point))
                    state.committed = point
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=not synchronous)
        except KafkaException as exc:
            # A commit refused during a rebalance is retried by the next one, or
            # the records are redelivered to the partition's next owner.
            log.warning(
                "kafka commit of %d partitions failed: %s; those still held here will be committed again",
                len(offsets),
                exc,
            )
            with self.cond:
                for tp in offsets:
                    failed = self.parts.get((tp.topic, tp.partition))
                    if failed is not None:
                        failed.committed = None

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit's outcome (on the poll thread): a refused one is made again.

        A commit sent just before a rebalance carries the old generation and is
        refused (``ILLEGAL_GENERATION``, ``REBALANCE_IN_PROGRESS``, ...). The
        partitions it named are marked uncommitted, so the next commit of the
        ones still held here sends their offsets again with the new
        generation; the ones given up were committed by the revoke.
        """
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not failed:
            return
        again = 0
        with self.cond:
            for tp in failed:
                state = self.parts.get((tp.topic, tp.partition))
                if state is not None and state.committed == tp.offset:
                    state.committed = None
                    again += 1
        reason = error if error is not None else failed[0].error
        log.info(
            "kafka commit of %d partitions refused (%s): %d will be committed again",
            len(failed),
            reason,
            again,
        )

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("kafka consumer group %s assigned %s", self.group, _names(partitions))
        starts = assignment_starts(consumer, partitions, self.settings.timeout)
        fresh: list[TopicPartition] = []
        with self.cond:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                held = self.parts.get(key)
                if held is not None and not held.revoking:
                    continue  # assigned again while held: its records and leases stay as they are
                self.parts[key] = PartitionState(tp.topic, tp.partition, next(self._generation))
                self.parts[key].start = starts.get(key)
                fresh.append(TopicPartition(tp.topic, tp.partition))
        resume_fresh(consumer, fresh)
        with self.cond:
            self._joined |= self._subscribed
            if self._wanted <= self._subscribed:
                self._join_started = None
            self.cond.notify_all()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("kafka consumer group %s revoked %s", self.group, _names(partitions))
        keys = [(tp.topic, tp.partition) for tp in partitions]
        deadline = time.monotonic() + self.settings.rebalance_grace
        with self.cond:
            for key in keys:
                state = self.parts.get(key)
                if state is not None:
                    state.revoking = True
            while any(key in self.parts and self.parts[key].leases for key in keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self.cond.wait(min(remaining, 0.05))
        self._commit(consumer, synchronous=True, only=keys)
        with self.cond:
            for key in keys:
                self.parts.pop(key, None)
            self.cond.notify_all()

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.warning(
            "kafka consumer group %s forgot this member (session timeout, or a broker restarted): "
            "lost %s, their unfinished jobs run again; joining again",
            self.group,
            _names(partitions),
        )
        with self.cond:
            for tp in partitions:
                self.parts.pop((tp.topic, tp.partition), None)
            self._rejoin = True
            self.cond.notify_all()


def _names(partitions: list[TopicPartition]) -> str:
    """``topic[0,1]`` for a log line; ``nothing`` for an empty list."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(f"{t}{sorted(p)}" for t, p in sorted(by_topic.items())) or "nothing"
