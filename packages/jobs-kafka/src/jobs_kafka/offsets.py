"""Committed offsets and high watermarks of a group's partitions, from any process.

The high watermark is read from a fetch response (``get_watermark_offsets``
with ``cached=True`` once the partition was fetched), so any process can
compute a group's lag without being a member of the group.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from jobs_core.errors import BackendUnavailable, OperationTimedOut

from jobs_kafka.settings import KafkaSettings

Key = tuple[str, int]


@dataclass(frozen=True)
class PartitionOffsets:
    """Where a group stands on one partition."""

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


def probe(
    settings: KafkaSettings,
    group: str,
    partitions: Sequence[Key],
    scan: Callable[[Any], None] | None = None,
) -> list[PartitionOffsets]:
    """Committed offset and high watermark of each partition for ``group``.

    With ``scan``, every record between the committed offset and the high
    watermark is read and passed to it (used to count delayed jobs per queue).
    """
    if not partitions:
        return []
    consumer = Consumer(
        settings.consumer_config(
            group,
            **{
                "enable.partition.eof": True,
                "client.id": f"jobs-probe-{uuid.uuid4().hex[:8]}",
                **({} if scan else {"max.partition.fetch.bytes": 1024}),
            },
        )
    )
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            committed = consumer.committed(tps, timeout=settings.timeout)
        except KafkaException as exc:
            raise BackendUnavailable(
                f"kafka brokers {settings.display()} unavailable reading offsets of group {group}: {exc}"
            ) from exc
        start: dict[Key, int] = {}
        for tp in committed:
            start[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -1
        consumer.assign(
            [TopicPartition(t, p, off if off >= 0 else OFFSET_BEGINNING) for (t, p), off in start.items()]
        )
        first: dict[Key, int] = {}
        finished: set[Key] = set()
        deadline = time.monotonic() + settings.timeout
        while len(finished) < len(start):
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
        result = []
        for key, committed_offset in start.items():
            high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)[1]
            base = committed_offset if committed_offset >= 0 else first.get(key, high)
            result.append(PartitionOffsets(key[0], key[1], base, max(high, base)))
        return result
    finally:
        consumer.close()
