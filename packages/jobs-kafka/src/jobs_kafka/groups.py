"""One consumer group per queue: routing the driver's calls to each queue's consumer."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from jobs_kafka.consuming import Handle, Key, QueueConsumer, Recreate
from jobs_kafka.partitions import Fetched
from jobs_kafka.settings import KafkaSettings


class ConsumerSet:
    """One :class:`QueueConsumer` per queue, each in its own consumer group.

    The group of queue ``q`` is ``<group_id>.<q>``: a queue's workers share
    its partitions, a rebalance of one queue never pauses another, and the
    group's lag is the queue's backlog. All consumers of a process share one
    condition, so a ``reserve`` over several queues wakes on any of them.
    """

    def __init__(self, settings: KafkaSettings, recreate: Recreate | None = None) -> None:
        self.settings = settings
        self.recreate = recreate
        self.cond = threading.Condition()
        self.produced: dict[Key, int] = {}
        self.by_topic: dict[str, QueueConsumer] = {}
        self.held: frozenset[str] = frozenset()

    def group_of(self, topic: str) -> str:
        """The consumer group of a queue topic."""
        return f"{self.settings.group_id}.{topic[len(self.settings.topic_prefix) :]}"

    def get(self, topic: str) -> QueueConsumer:
        """The consumer of ``topic`` (created, not started)."""
        with self.cond:
            consumer = self.by_topic.get(topic)
            if consumer is None:
                consumer = QueueConsumer(
                    self.settings, self.group_of(topic), self.cond, self.produced, self.recreate
                )
                consumer.held = topic in self.held
                self.by_topic[topic] = consumer
            return consumer

    def hold(self, topics: Iterable[str]) -> None:
        """Pause the partitions of exactly ``topics`` (paused queues), resume the others'."""
        with self.cond:
            self.held = frozenset(topics)
            for topic, consumer in self.by_topic.items():
                consumer.held = topic in self.held

    def _existing(self, topic: str) -> QueueConsumer | None:
        with self.cond:
            return self.by_topic.get(topic)

    def want(self, topics: Iterable[str]) -> None:
        """Start the consumers of ``topics``."""
        for topic in topics:
            self.get(topic).want([topic])

    def joined(self, topics: Sequence[str]) -> bool:
        """Whether every topic's group assigned partitions."""
        return all(self.get(topic).joined([topic]) for topic in topics)

    def waiting_for_join(self, topics: Sequence[str]) -> float:
        """Longest time a topic's consumer has waited for its first assignment."""
        return max((self.get(topic).waiting_for_join() for topic in topics), default=0.0)

    def caught_up(self, topics: Sequence[str]) -> bool:
        """Whether every topic was read up to what this process wrote."""
        return all(self.get(topic).caught_up([topic]) for topic in topics)

    def started(self, topics: Sequence[str]) -> bool:
        """Whether every topic's assigned partitions returned records or reached their end."""
        return all(self.get(topic).started([topic]) for topic in topics)

    def note_produced(self, topic: str, partition: int, offset: int) -> None:
        """Remember the highest offset this process wrote to a partition."""
        key = (topic, partition)
        with self.cond:
            if offset > self.produced.get(key, -1):
                self.produced[key] = offset

    def next_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Per partition, the offset the next record written to it gets, as far as this
        process knows (from what it read and what it wrote): a lower bound.
        """
        with self.cond:
            consumer = self.by_topic.get(topic)
            found = {}
            for partition in partitions:
                key = (topic, partition)
                known = self.produced.get(key, -1) + 1
                state = consumer.parts.get(key) if consumer is not None else None
                if state is not None:
                    known = max(known, state.eof_offset, state.next_offset or 0)
                found[partition] = known
            return found

    def note_written(self, topic: str, counts: Mapping[int, int], before: Mapping[int, int]) -> None:
        """Remember that this process wrote ``counts[p]`` records to partition ``p``,
        each at an offset of ``before[p]`` (from :meth:`next_offsets`, taken before
        writing) or later: its highest offset is at least ``before[p] + counts[p] - 1``.
        """
        for partition, count in counts.items():
            self.note_produced(topic, partition, before[partition] + count - 1)

    def take(self, topics: Sequence[str], limit: int, lease: float) -> list[tuple[Fetched, str, int]]:
        """Lease up to ``limit`` records, serving ``topics`` in order."""
        taken: list[tuple[Fetched, str, int]] = []
        for topic in topics:
            if len(taken) >= limit:
                break
            taken += self.get(topic).take([topic], limit - len(taken), lease)
        return taken

    def wait(self, seconds: float) -> None:
        """Sleep until any consumer has news or ``seconds`` pass."""
        with self.cond:
            self.cond.wait(seconds)

    def next_expiry(self, topics: Sequence[str]) -> float | None:
        """When the earliest lease on ``topics`` ends."""
        times = [self.get(topic).next_expiry([topic]) for topic in topics]
        return min((t for t in times if t is not None), default=None)

    def holds(self, handle: Handle, receipt: str) -> bool:
        """Whether the lease is still held."""
        consumer = self._existing(handle[0])
        return consumer is not None and consumer.holds(handle, receipt)

    def finish(self, handle: Handle, receipt: str) -> bool:
        """Mark a leased record done."""
        consumer = self._existing(handle[0])
        return consumer is not None and consumer.finish(handle, receipt)

    def finish_many(self, items: Sequence[tuple[Handle, str]]) -> None:
        """Mark several leased records done."""
        by_topic: dict[str, list[tuple[Handle, str]]] = {}
        for handle, receipt in items:
            by_topic.setdefault(handle[0], []).append((handle, receipt))
        for topic, group in by_topic.items():
            consumer = self._existing(topic)
            if consumer is not None:
                consumer.finish_many(group)

    def give_back(self, handle: Handle, receipt: str) -> bool:
        """Put a leased record back, unrun."""
        consumer = self._existing(handle[0])
        return consumer is not None and consumer.give_back(handle, receipt)

    def extend(self, handle: Handle, receipt: str, seconds: float) -> bool:
        """Renew a lease."""
        consumer = self._existing(handle[0])
        return consumer is not None and consumer.extend(handle, receipt, seconds)

    def local_counts(self, topic: str) -> tuple[int, int, int]:
        """``(ready, leased, finished but not committable)`` records of ``topic`` held here."""
        consumer = self._existing(topic)
        return consumer.local_counts(topic) if consumer is not None else (0, 0, 0)

    def flush_commits(self, topic: str) -> None:
        """Commit the finished work of ``topic`` now."""
        consumer = self._existing(topic)
        if consumer is not None:
            consumer.flush_commits(self.settings.timeout)

    def skip_to(self, targets: dict[Key, int]) -> set[Key]:
        """Drop waiting records below ``targets`` on partitions held here."""
        handled: set[Key] = set()
        for topic in {key[0] for key in targets}:
            consumer = self._existing(topic)
            if consumer is not None:
                handled |= consumer.skip_to({k: v for k, v in targets.items() if k[0] == topic})
        return handled

    def close(self) -> None:
        """Close every consumer (they commit and leave their groups in parallel)."""
        with self.cond:
            consumers = list(self.by_topic.values())
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            consumer.close()
