"""Committed offsets and high watermarks of groups' partitions, from any process.

Committed offsets come from the admin API (one request per group, all in
flight at once). The high watermark is read from a fetch response
(``get_watermark_offsets`` with ``cached=True`` once the partition was
fetched), so any process can compute a group's lag without joining it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from jobs_core.errors import BackendUnavailable, OperationTimedOut

from jobs_kafka.settings import KafkaSettings

Key = tuple[str, int]

log = logging.getLogger("jobs_kafka.consumer")


@dataclass(frozen=True)
class PartitionOffsets:
    """Where a group stands on one partition."""

    group: str
    topic: str
    partition: int
    #: The group's committed offset (the first record not yet finished), or the log start.
    committed: int
    #: The offset the next record will get.
    high: int

    @property
    def lag(self) -> int:
        """Records not yet finished by the group."""
        return max(0, self.high - self.committed)


def assignment_starts(consumer: Any, partitions: Sequence[TopicPartition], timeout: float) -> dict[Key, int]:
    """Where a consumer's newly assigned partitions start: the group's committed offsets.

    Partitions with no committed offset are left out; if the brokers cannot
    say, nothing is returned (fetching starts by ``auto.offset.reset``).
    """
    starts: dict[Key, int] = {}
    if partitions:
        try:
            for tp in consumer.committed(list(partitions), timeout=timeout):
                if tp.offset >= 0:
                    starts[(tp.topic, tp.partition)] = tp.offset
        except KafkaException as exc:
            log.debug("committed offsets of a new assignment unknown: %s", exc)
    return starts


def resume_fresh(consumer: Any, partitions: Sequence[TopicPartition]) -> None:
    """Resume partitions whose bookkeeping starts afresh on assignment.

    librdkafka keeps a partition's pause across a revoke and a later
    assignment, while the caller's bookkeeping starts unpaused: without
    this, a partition paused when it was taken away (its window full) would
    never be fetched again once it came back.
    """
    if partitions:
        try:
            consumer.resume([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        except KafkaException as exc:
            log.debug("resuming a new assignment: %s", exc)


def committed_offsets(
    settings: KafkaSettings, admin: AdminClient, requests: Mapping[str, Sequence[Key]]
) -> dict[tuple[str, str, int], int]:
    """``(group, topic, partition) -> committed offset`` (``-1`` when none)."""
    futures = []
    try:
        for group, keys in requests.items():
            if keys:
                request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in keys])
                futures += list(
                    admin.list_consumer_group_offsets([request], request_timeout=settings.timeout).values()
                )
        result: dict[tuple[str, str, int], int] = {}
        for future in futures:
            answer = future.result(timeout=settings.timeout + 1)
            for tp in answer.topic_partitions or []:
                result[(answer.group_id, tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -1
        return result
    except KafkaException as exc:
        raise BackendUnavailable(
            f"kafka brokers {settings.display()} unavailable reading consumer group offsets: {exc}"
        ) from exc
    except TimeoutError as exc:
        raise OperationTimedOut(
            f"kafka brokers {settings.display()} did not report group offsets within {settings.timeout:g} s"
        ) from exc


def probe_groups(
    settings: KafkaSettings,
    admin: AdminClient,
    requests: Mapping[str, Sequence[Key]],
    scan: Callable[[str, Any], None] | None = None,
) -> list[PartitionOffsets]:
    """Committed offset and high watermark of each requested ``group -> partitions``.

    With ``scan``, every record between a group's committed offset and the
    high watermark is read and passed to ``scan(group, record)``.
    """
    committed = committed_offsets(settings, admin, requests)
    starts: dict[Key, list[tuple[str, int]]] = {}
    for group, keys in requests.items():
        for key in keys:
            starts.setdefault(key, []).append((group, committed.get((group, *key), -1)))
    if not starts:
        return []
    result: list[PartitionOffsets] = []
    # One fetch per partition, from the lowest start of the groups asking about it.
    plan = {key: min(offset for _, offset in groups) for key, groups in starts.items()}
    seen = _fetch(settings, plan, scan=None if scan is None else (lambda r: _scan(r, starts, scan)))
    for key, groups in starts.items():
        first, high = seen[key]
        for group, offset in groups:
            base = offset if offset >= 0 else (first if first >= 0 else high)
            result.append(PartitionOffsets(group, key[0], key[1], base, max(high, base)))
    return result


def _scan(record: Any, starts: Mapping[Key, list[tuple[str, int]]], scan: Callable[[str, Any], None]) -> None:
    for group, offset in starts[(record.topic(), record.partition())]:
        if record.offset() >= offset:
            scan(group, record)


def _fetch(
    settings: KafkaSettings, plan: Mapping[Key, int], scan: Callable[[Any], None] | None
) -> dict[Key, tuple[int, int]]:
    """Fetch each partition from its planned offset; ``key -> (first offset seen, high watermark)``."""
    consumer = Consumer(
        settings.consumer_config(
            f"jobs-probe-{uuid.uuid4().hex}",
            **{"enable.partition.eof": True, **({} if scan else {"max.partition.fetch.bytes": 1024})},
        )
    )
    try:
        consumer.assign(
            [TopicPartition(t, p, off if off >= 0 else OFFSET_BEGINNING) for (t, p), off in plan.items()]
        )
        first: dict[Key, int] = {}
        finished: set[Key] = set()
        deadline = time.monotonic() + settings.timeout
        while len(finished) < len(plan):
            if time.monotonic() > deadline:
                raise OperationTimedOut(
                    f"kafka brokers {settings.display()} did not serve offsets within {settings.timeout:g} s"
                )
            for message in consumer.consume(1000, 0.1):
                key = (str(message.topic()), int(message.partition() or 0))
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        first.setdefault(key, int(message.offset() or 0))
                        finished.add(key)
                    elif error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise BackendUnavailable(f"reading {key[0]} from {settings.display()}: {error.str()}")
                    continue
                first.setdefault(key, int(message.offset() or 0))
                if scan is not None:
                    scan(message)
                else:
                    finished.add(key)
        return {
            key: (first.get(key, -1), consumer.get_watermark_offsets(TopicPartition(*key), cached=True)[1])
            for key in plan
        }
    finally:
        consumer.close()
