"""Writing records and waiting until the brokers acknowledged every one."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from jobs_core.errors import BackendUnavailable, OperationTimedOut

from jobs_kafka.settings import KafkaSettings

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Record:
    """One record to write."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None
    partition: int | None = None


@dataclass
class _Batch:
    total: int
    errors: list[KafkaError] = field(default_factory=list)
    offsets: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        # list.append is atomic, so reports served by several threads are all counted.
        return self.total - len(self.offsets) - len(self.errors)

    def report(self, error: KafkaError | None, message: Message) -> None:
        """Delivery callback: one per record."""
        if error is not None:
            self.errors.append(error)
        else:
            self.offsets.append((message.topic() or "", message.partition() or 0, message.offset() or 0))


class Writer:
    """An idempotent producer (``acks=all``) whose ``send`` returns once every record is stored.

    Safe to use from several threads. ``send`` raises
    :class:`~jobs_core.errors.OperationTimedOut` or
    :class:`~jobs_core.errors.BackendUnavailable` naming the brokers when a
    record is not acknowledged within the configured timeout; it never hangs.
    """

    def __init__(self, settings: KafkaSettings, **overrides: object) -> None:
        self.settings = settings
        self.producer = Producer(settings.producer_config(**overrides))
        self._lock = threading.Lock()
        self._closed = False

    def send(self, records: Sequence[Record]) -> list[tuple[str, int, int]]:
        """Write ``records``; return the ``(topic, partition, offset)`` of each, in delivery order."""
        if not records:
            return []
        batch = _Batch(total=len(records))
        report = batch.report
        timeout = self.settings.timeout
        deadline = time.monotonic() + timeout + 1.0
        produce = self.producer.produce
        for record in records:
            while True:
                try:
                    if record.headers is None and record.partition is None:
                        produce(record.topic, record.value, record.key, on_delivery=report)
                    else:
                        produce(
                            record.topic,
                            record.value,
                            record.key,
                            partition=-1 if record.partition is None else record.partition,
                            on_delivery=report,
                            headers=record.headers,
                        )
                    break
                except BufferError:
                    self.producer.poll(0.05)
                    if time.monotonic() > deadline:
                        raise self._timed_out(batch) from None
                except KafkaException as exc:
                    raise BackendUnavailable(
                        f"kafka producer for {self.settings.display()} refused a record: {exc}"
                    ) from exc
        while batch.pending > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(batch)
            self.producer.flush(min(remaining, 1.0))
        if batch.errors:
            error = batch.errors[0]
            message = (
                f"kafka brokers {self.settings.display()} did not store {len(batch.errors)} of "
                f"{len(records)} records: {error.str()}"
            )
            if error.code() in (
                KafkaError._MSG_TIMED_OUT,
                KafkaError._TIMED_OUT,
                KafkaError.REQUEST_TIMED_OUT,
            ):
                raise OperationTimedOut(message + f" (timeout {timeout:g} s)")
            raise BackendUnavailable(message)
        return batch.offsets

    def _timed_out(self, batch: _Batch) -> OperationTimedOut:
        return OperationTimedOut(
            f"kafka brokers {self.settings.display()} did not acknowledge {batch.pending} records "
            f"within {self.settings.timeout:g} s"
        )

    def close(self) -> None:
        """Deliver what is queued (bounded by the timeout). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.producer.flush(self.settings.timeout)
