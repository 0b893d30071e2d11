"""Reading a single-partition topic to its end, incrementally.

The end is found by fetching, not with a ListOffsets request: after a seek
to the reader's position, librdkafka fetches again and reports
``_PARTITION_EOF`` at the high watermark of that fresh fetch response. So a
read started after a write returns that write. This is standard Kafka
behaviour and does not depend on ``OFFSET_END`` lookups.

A log that vanished (a broker that lost its data) is created again through
``recreate``, and a log that ends before the reader's position (re-created,
or truncated) is read again from its start, with a warning: a reader never
waits for ever past the end of a log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from jobs_core.errors import BackendUnavailable, OperationTimedOut

from jobs_kafka.settings import KafkaSettings

Apply = Callable[[Any], None]

log = logging.getLogger("jobs_kafka.logs")


class LogReader:
    """Applies every record of partition 0 of ``topic``, in order, once."""

    def __init__(
        self, settings: KafkaSettings, topic: str, apply: Apply, recreate: Callable[[], None] | None = None
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.apply = apply
        #: Makes sure the topic exists (creates it again when the brokers lost it).
        self.recreate = recreate
        self.position = -1
        self.lock = threading.RLock()
        self._consumer: Any = None

    def catch_up(self, until: int | None = None) -> None:
        """Read to the current end of the log (and at least past offset ``until``)."""
        with self.lock:
            consumer = self._consumer
            start = self.position if self.position >= 0 else OFFSET_BEGINNING
            if consumer is None:
                consumer = Consumer(
                    self.settings.consumer_config(
                        f"jobs-reader-{uuid.uuid4().hex}",
                        **{"enable.partition.eof": True, "fetch.wait.max.ms": 100},
                    )
                )
                consumer.assign([TopicPartition(self.topic, 0, start)])
                self._consumer = consumer
            else:
                consumer.seek(TopicPartition(self.topic, 0, start))
            started = time.monotonic()
            deadline = started + self.settings.timeout
            recreated = False
            while True:
                messages = consumer.consume(1000, 0.1)
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            if until is None or self.position > until:
                                return
                            continue
                        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            continue
                        raise BackendUnavailable(
                            f"reading kafka topic {self.topic} from {self.settings.display()}: {error.str()}"
                        )
                    if message.offset() < self.position:
                        continue
                    self.apply(message)
                    self.position = message.offset() + 1
                if until is not None and self.position > until:
                    return
                if self.recreate is not None and not recreated and time.monotonic() > started + 1.0:
                    # No end of the log within a second: a broker that lost its data no longer
                    # has the topic (and says nothing about it to an assigned reader).
                    recreated = True
                    self.recreate()
                if not messages and self._beyond_end(consumer):
                    log.warning(
                        "kafka topic %s ends before offset %d already read (re-created, or a broker "
                        "lost its data): reading it again from its start",
                        self.topic,
                        self.position,
                    )
                    self.position = -1
                    consumer.seek(TopicPartition(self.topic, 0, OFFSET_BEGINNING))
                if time.monotonic() > deadline:
                    raise OperationTimedOut(
                        f"kafka brokers {self.settings.display()} did not serve topic {self.topic} "
                        f"within {self.settings.timeout:g} s"
                    )

    def _beyond_end(self, consumer: Any) -> bool:
        """Whether the last fetch response put the end of the log below the reader's position."""
        if self.position <= 0:
            return False
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), cached=True)
        except KafkaException:
            return False
        return high is not None and 0 <= high < self.position

    def close(self) -> None:
        """Close the reader's consumer. Safe to call twice."""
        with self.lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def read_record(settings: KafkaSettings, topic: str, partition: int, offset: int) -> bytes | None:
    """The value of the record at ``offset`` of ``topic[partition]``, or ``None`` if it is gone."""
    consumer = Consumer(
        settings.consumer_config(
            f"jobs-reader-{uuid.uuid4().hex}", **{"enable.partition.eof": True, "fetch.wait.max.ms": 100}
        )
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + settings.timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(1, 0.1):
                error = message.error()
                if error is None:
                    value: bytes | None = message.value()
                    return value if message.offset() == offset else None
                if error.code() == KafkaError._PARTITION_EOF:
                    return None
                if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BackendUnavailable(
                        f"reading kafka topic {topic} from {settings.display()}: {error.str()}"
                    )
        raise OperationTimedOut(
            f"kafka brokers {settings.display()} did not serve {topic}[{partition}] "
            f"within {settings.timeout:g} s"
        )
    finally:
        consumer.close()
