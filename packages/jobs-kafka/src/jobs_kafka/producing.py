"""Writing records and waiting until the brokers acknowledged every one."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from jobs_core.errors import BackendUnavailable, OperationTimedOut, PayloadTooLarge

from jobs_kafka.settings import KafkaSettings

Headers = list[tuple[str, str | bytes | None]]

log = logging.getLogger("jobs_kafka.producer")

#: librdkafka's default ``message.max.bytes``: the largest record a producer sends.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
#: Bytes of a record kept for its framing (librdkafka counts about 40) and for the
#: headers the driver adds to a job (a delay tier's queue name and time): a job
#: may be this much smaller than ``message.max.bytes``.
RECORD_RESERVE = 512
#: Delivery errors after which the producer is replaced by a new one (with a new
#: producer id): a broker that lost its state (a restart of a broker that keeps
#: nothing) answers an idempotent producer ``UNKNOWN_PRODUCER_ID`` for ever.
_REPLACE_AFTER = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.PRODUCER_FENCED,
        KafkaError._FATAL,
    }
)

#: Delivery errors that refuse the producer's identity: the record was not stored, and
#: a new producer (a new identity) can store it. A broker that kept nothing across a
#: restart hands out producer ids again, so a producer may find its id given to
#: another one (``PRODUCER_FENCED``) right after it was replaced once.
_IDENTITY_REFUSED = frozenset(
    {
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.PRODUCER_FENCED,
    }
)


class _IdentityRefused(BackendUnavailable):
    """The brokers refused the producer's identity and stored none of the records
    (raised inside :class:`Writer` only: its caller sends once more with the new producer).
    """


def message_max_bytes(settings: KafkaSettings) -> int:
    """The producers' ``message.max.bytes``: the configured value or librdkafka's default."""
    value = settings.config.get("message.max.bytes")
    try:
        return int(value) if value is not None else DEFAULT_MESSAGE_MAX_BYTES
    except ValueError:
        return DEFAULT_MESSAGE_MAX_BYTES


def headers_size(headers: Headers | None) -> int:
    """Bytes the names and values of ``headers`` take in a record."""
    total = 0
    for name, value in headers or ():
        total += len(name.encode())
        if value:
            total += len(value.encode() if isinstance(value, str) else value)
    return total


# A delivery report's partition and offset, as plain functions (applied with map).
_PARTITION = cast("Callable[[Message], int]", Message.partition)
_OFFSET = cast("Callable[[Message], int]", Message.offset)


@dataclass(frozen=True)
class Record:
    """One record to write."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None
    partition: int | None = None


class _Reports:
    """The delivery reports of one ``send``: one Python call per record, nothing else."""

    __slots__ = ("delivered", "failed", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.delivered: list[Message] = []
        self.failed: list[KafkaError] = []

    @property
    def pending(self) -> int:
        # list.append is atomic, so reports served by several threads are all counted.
        return self.total - len(self.delivered) - len(self.failed)

    def callback(self) -> Callable[[KafkaError | None, Message], None]:
        """The ``on_delivery`` callback shared by every record of the batch."""
        delivered, failed = self.delivered.append, self.failed.append

        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                delivered(message)
            else:
                failed(error)

        return report


class Writer:
    """An idempotent producer (``acks=all``) whose ``send`` returns once every record is stored.

    Safe to use from several threads. ``send`` raises
    :class:`~jobs_core.errors.OperationTimedOut` or
    :class:`~jobs_core.errors.BackendUnavailable` naming the brokers when a
    record is not acknowledged within the configured timeout; it never hangs.
    A record larger than the producer's ``message.max.bytes`` is refused with
    :class:`~jobs_core.errors.PayloadTooLarge`. After a timeout or a lost
    producer identity the producer is replaced, so the next ``send`` starts
    afresh (a broker that lost its state refuses the old identity for ever).
    """

    def __init__(self, settings: KafkaSettings, **overrides: object) -> None:
        self.settings = settings
        self._overrides = overrides
        self.producer = Producer(settings.producer_config(**overrides))
        #: The largest record (value, key and headers) the producers send.
        self.max_record_bytes = message_max_bytes(settings)
        self._bulk: Producer | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._retired: list[Producer] = []

    def _bulk_producer(self) -> Producer:
        """The producer of :meth:`send_spread`: delivery reports for failures only."""
        with self._lock:
            if self._bulk is None:
                config = self.settings.producer_config(**self._overrides)
                config["delivery.report.only.error"] = True
                self._bulk = Producer(config)
            return self._bulk

    def _renew(self, producer: Producer, purge: bool = True) -> None:
        """Replace ``producer`` (if it is still in use) by a new one with a new identity.

        ``purge=False`` for a producer stopped by a fatal error, which must not be used again.
        """
        with self._lock:
            if self._closed:
                return
            if producer is self.producer:
                self.producer = Producer(self.settings.producer_config(**self._overrides))
            elif producer is self._bulk:
                self._bulk = None
            else:
                return
            # Records still queued in the old producer failed or will; other threads may
            # still wait on it, so it is only purged, and kept until the writer closes
            # (destroying a client that another thread still flushes crashes the process).
            self._retired.append(producer)
        if purge:
            with contextlib.suppress(KafkaException):
                producer.purge(in_queue=True, in_flight=False)
                producer.poll(0)

    def renew_all(self, reason: str) -> None:
        """Replace every producer by a new one with a new identity, and fail what the old ones hold.

        Called when the brokers lost their state (a member the group forgot, a
        log that was re-created): a broker that keeps nothing across a restart
        hands out producer ids again, and a surviving producer whose id was
        given to another one has its writes acknowledged as duplicates and
        dropped. Every record still queued or in flight in an old producer is
        reported failed to its caller (it is written again, never taken as
        stored), so nothing is committed on the strength of such an ack.
        """
        with self._lock:
            if self._closed:
                return
            old = [p for p in (self.producer, self._bulk) if p is not None]
            self.producer = Producer(self.settings.producer_config(**self._overrides))
            self._bulk = None
            self._retired += old
        log.warning(
            "replacing the kafka producers for %s (new identities): %s", self.settings.display(), reason
        )
        for producer in old:
            with contextlib.suppress(KafkaException):  # a producer stopped by a fatal error
                producer.purge(in_queue=True, in_flight=True)
                producer.poll(0)

    def send(self, records: Sequence[Record]) -> list[tuple[str, int, int]]:
        """Write ``records``; return the ``(topic, partition, offset)`` of each, in delivery order.

        If the brokers refuse the producer's identity and store none of them,
        they are sent once more with the new producer that replaced it.
        """
        try:
            return self._send(records)
        except _IdentityRefused:
            pass
        try:
            return self._send(records)
        except _IdentityRefused as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _send(self, records: Sequence[Record]) -> list[tuple[str, int, int]]:
        if not records:
            return []
        batch = _Reports(len(records))
        report = batch.callback()
        producer = self.producer
        deadline = time.monotonic() + self.settings.timeout + 1.0
        for record in records:
            size = len(record.value or b"") + len(record.key or b"") + headers_size(record.headers)
            while True:
                try:
                    producer.produce(
                        record.topic,
                        record.value,
                        record.key,
                        partition=-1 if record.partition is None else record.partition,
                        on_delivery=report,
                        headers=record.headers,
                    )
                    break
                except BufferError:
                    self._make_room(producer, batch, deadline)
                except KafkaException as exc:
                    raise self._refused(exc, size) from exc
        self._wait(producer, batch, deadline)
        return [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in batch.delivered]

    def send_values(self, topic: str, values: Sequence[bytes]) -> dict[int, int]:
        """Write ``values`` to ``topic`` (no key, no headers); return the highest offset per partition.

        The enqueue path: no object per record, one shared delivery callback.
        Sent once more, as :meth:`send` does, if the producer's identity is refused.
        """
        try:
            return self._send_chunks(topic, [values])
        except _IdentityRefused:
            pass
        return self.send_chunks(topic, [values])

    def send_chunks(self, topic: str, chunks: Iterable[Sequence[bytes]]) -> dict[int, int]:
        """:meth:`send_values` for values that come a chunk at a time: each chunk is
        handed to the producer as it comes, so that librdkafka compresses and
        sends one chunk while the caller encodes the next.
        """
        try:
            return self._send_chunks(topic, chunks)
        except _IdentityRefused as exc:
            raise BackendUnavailable(str(exc)) from exc

    def _send_chunks(self, topic: str, chunks: Iterable[Sequence[bytes]]) -> dict[int, int]:
        batch = _Reports(0)
        report = batch.callback()
        producer = self.producer
        deadline = time.monotonic() + self.settings.timeout + 1.0
        produce = producer.produce
        for values in chunks:
            batch.total += len(values)
            for value in values:
                while True:
                    try:
                        # Positional arguments: confluent-kafka parses keywords slowly (~0.8 µs a call).
                        produce(topic, value, None, -1, report)
                        break
                    except BufferError:
                        self._make_room(producer, batch, deadline)
                    except KafkaException as exc:
                        raise self._refused(exc, len(value)) from exc
        if not batch.total:
            return {}
        self._wait(producer, batch, deadline)
        # The reports of one partition arrive in offset order: the last one is the highest.
        delivered = batch.delivered
        return dict(zip(map(_PARTITION, delivered), map(_OFFSET, delivered), strict=True))

    def send_spread(
        self, topic: str, partitions: Sequence[int], chunks: Iterable[Sequence[bytes]]
    ) -> dict[int, int]:
        """Write each chunk of values to one of ``partitions`` in turn; return how
        many records went to each partition, once every one is acknowledged.

        The bulk path: a second producer that reports only failures, so a
        stored record costs no delivery report (a message object built and a
        Python call, about a third of the client's work per record). It raises
        like :meth:`send` when a record is not stored.
        """
        producer = self._bulk_producer()
        failed: list[KafkaError] = []
        note = failed.append

        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                note(error)

        counts: dict[int, int] = {}
        deadline = time.monotonic() + self.settings.timeout + 1.0
        produce = producer.produce
        for turn, values in enumerate(chunks):
            partition = partitions[turn % len(partitions)]
            counts[partition] = counts.get(partition, 0) + len(values)
            for value in values:
                while True:
                    try:
                        # Positional arguments: confluent-kafka parses keywords slowly.
                        produce(topic, value, None, partition, report)
                        break
                    except BufferError:
                        self._poll(producer, 0.05)
                        if time.monotonic() > deadline:
                            self._renew(producer)
                            raise self._timed_out_count(len(producer)) from None
                    except KafkaException as exc:
                        raise self._refused(exc, len(value)) from exc
        total = sum(counts.values())
        while total:
            left = self._flush(producer, max(0.0, min(deadline - time.monotonic(), 1.0)))
            if failed:
                raise self._failure(producer, failed[0], len(failed), total)
            if left == 0:
                break
            if time.monotonic() > deadline:
                self._renew(producer)
                raise self._timed_out_count(left)
        return counts

    def _make_room(self, producer: Producer, batch: _Reports, deadline: float) -> None:
        """The producer's queue is full: serve delivery reports until it has room."""
        self._poll(producer, 0.05)
        if time.monotonic() > deadline:
            self._renew(producer)
            raise self._timed_out(batch)

    def _flush(self, producer: Producer, timeout: float) -> int:
        """``producer.flush``; a fatal producer error replaces the producer and raises
        :class:`~jobs_core.errors.BackendUnavailable` (the records were not stored).
        """
        try:
            return int(producer.flush(timeout))
        except KafkaException as exc:
            raise self._fatal(producer, exc) from exc

    def _poll(self, producer: Producer, timeout: float) -> None:
        """``producer.poll``, with fatal errors handled as in :meth:`_flush`."""
        try:
            producer.poll(timeout)
        except KafkaException as exc:
            raise self._fatal(producer, exc) from exc

    def _fatal(self, producer: Producer, exc: KafkaException) -> BackendUnavailable:
        # A fatal error (an identity the brokers refuse, such as a sequence out of order after
        # a broker lost its state) stops the producer for good: the next send uses a new one.
        self._renew(producer, purge=False)
        return BackendUnavailable(f"kafka producer for {self.settings.display()} failed: {exc}")

    def _refused(self, exc: KafkaException, size: int) -> BackendUnavailable | PayloadTooLarge:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            return PayloadTooLarge(size, self.max_record_bytes, "kafka")
        return BackendUnavailable(f"kafka producer for {self.settings.display()} refused a record: {exc}")

    def _wait(self, producer: Producer, batch: _Reports, deadline: float) -> None:
        """Flush until every record of ``batch`` is reported; raise for a failed one."""
        while batch.pending > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._renew(producer)
                raise self._timed_out(batch)
            self._flush(producer, min(remaining, 1.0))
        if batch.failed:
            raise self._failure(producer, batch.failed[0], len(batch.failed), batch.total)

    def _failure(
        self, producer: Producer, error: KafkaError, failed: int, total: int
    ) -> BackendUnavailable | OperationTimedOut:
        if error.code() in _REPLACE_AFTER or error.fatal():
            self._renew(producer)
        brokers = self.settings.display()
        message = f"kafka brokers {brokers} did not store {failed} of {total} records: {error.str()}"
        if error.code() in (
            KafkaError._MSG_TIMED_OUT,
            KafkaError._TIMED_OUT,
            KafkaError.REQUEST_TIMED_OUT,
        ):
            return OperationTimedOut(message + f" (timeout {self.settings.timeout:g} s)")
        if error.code() in _IDENTITY_REFUSED and failed == total:
            return _IdentityRefused(message)
        return BackendUnavailable(message)

    def _timed_out(self, batch: _Reports) -> OperationTimedOut:
        return self._timed_out_count(batch.pending)

    def _timed_out_count(self, pending: int) -> OperationTimedOut:
        return OperationTimedOut(
            f"kafka brokers {self.settings.display()} did not acknowledge {pending} records "
            f"within {self.settings.timeout:g} s"
        )

    def close(self) -> None:
        """Deliver what is queued (bounded by the timeout). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            bulk = self._bulk
            self._retired = []
        for producer in (self.producer, bulk):
            if producer is not None:
                try:
                    producer.flush(self.settings.timeout)
                except KafkaException as exc:
                    log.warning("closing a kafka producer: %s", exc)
