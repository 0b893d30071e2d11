"""Deliberately broken drivers: each breaks one promise of the driver contract.

``test_conformance_meta.py`` runs the conformance suite against each of them
and checks that the tests meant to catch the breakage fail. They are built in
code by a ``conftest.py`` that overrides ``jobs_driver_factory``, the way a
third party with in-code set-up runs the suite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from jobs_core.driver import Capability
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import LeaseLost
from jobs_core.message import Delivery, Message, QueueStats, validate_queue_name


class LeasesNeverExpire(MemoryDriver):
    """A reserved message stays reserved forever unless acked."""

    def _expire_leases(self, now: float) -> None:
        return None


class LeasesNotExclusive(MemoryDriver):
    """Reserve hands messages out but leaves them on the queue."""

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        found = super().reserve(queues, limit, lease, timeout)
        with self._store.condition:
            for delivery in found:
                record = self._store.records[delivery.id]
                self._push(record, time.time())
                record.receipt = delivery.receipt
        return found


class RetryLosesTheMessage(MemoryDriver):
    """Retry finishes the message instead of putting it back."""

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.ack(delivery)


class RetryForgetsTheAttempt(MemoryDriver):
    """Retry puts the message back without counting the attempt or the error."""

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.release(delivery, delay)


class PriorityIgnored(MemoryDriver):
    """Every message is stored with priority 0."""

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        return super().enqueue([m.replace(priority=0) for m in messages])


class DelayIgnored(MemoryDriver):
    """Delayed messages are due at once."""

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        now = time.time()
        return super().enqueue([m.replace(available_at=min(m.available_at, now)) for m in messages])


class UniqueIgnored(MemoryDriver):
    """Unique keys are dropped on the way in."""

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        return super().enqueue([m.replace(unique_key=None) for m in messages])


class PurgeLeavesMessages(MemoryDriver):
    """Purge reports the waiting messages but removes none."""

    def purge(self, queue: str) -> int:
        stats = self.stats(validate_queue_name(queue))
        return stats.pending + stats.delayed


class StatsMiscount(MemoryDriver):
    """Stats count reserved messages as pending."""

    def stats(self, queue: str | None = None) -> QueueStats:
        real = super().stats(queue)
        return QueueStats(real.pending + real.reserved, real.delayed, 0, real.completed, real.failed)


class PruneMiscounts(MemoryDriver):
    """Prune removes records but reports that it removed none."""

    def prune(self, older_than: float) -> int:
        super().prune(older_than)
        return 0


class StaleAckHonoured(MemoryDriver):
    """Ack finishes the message whoever holds its lease now."""

    def ack(self, delivery: Delivery) -> None:
        with self._store.condition:
            record = self._store.records.get(delivery.id)
            receipt = None if record is None else record.receipt
        if receipt is not None:
            super().ack(Delivery(delivery.message, receipt, delivery.lease_expires_at))


class AckNotIdempotent(MemoryDriver):
    """A second ack of one delivery raises."""

    def ack(self, delivery: Delivery) -> None:
        with self._store.condition:
            if self._owned(delivery) is None:
                raise LeaseLost(f"message {delivery.id} is not held by this delivery")
        super().ack(delivery)


class ExtendIgnoresLostLease(MemoryDriver):
    """Extend always says the lease is still held."""

    def extend(self, delivery: Delivery, lease: float) -> bool:
        super().extend(delivery, lease)
        return True


class FailDropsTheJob(MemoryDriver):
    """Fail forgets the job instead of keeping it in the failed store."""

    def fail(self, delivery: Delivery, error: str) -> None:
        self.ack(delivery)


class BulkEnqueueTruncates(MemoryDriver):
    """A batch of more than 100 messages keeps only the first 100."""

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        ids = super().enqueue(messages[:100])
        return ids + [m.id for m in messages[100:]]


class SilentlyUnsupportedPurge(MemoryDriver):
    """Does not declare PURGE, yet purge quietly does something."""

    capabilities = MemoryDriver.capabilities - {Capability.PURGE}


class SkipsValidation(MemoryDriver):
    """Stores whatever it is given: no name, size or feature checks."""

    def validate(self, messages: Sequence[Message]) -> list[bytes]:
        return [m.encode() for m in messages]


class MalformedRecordsCrashReserve(MemoryDriver):
    """Reserve raises on a malformed record instead of moving it to the failed store."""

    def _to_failed(self, rec: object, message: Message | None, error: str, now: float) -> None:
        if message is None:
            raise RuntimeError(f"cannot decode a record: {error}")
        super()._to_failed(rec, message, error, now)  # type: ignore[arg-type]


class PruneStopsAtTenThousand(MemoryDriver):
    """Prune removes at most 10,000 records per call (a limit of the backend's bulk delete)."""

    def prune(self, older_than: float) -> int:
        with self._store.condition:
            cutoff = time.time() - older_than
            old = [i for i, f in self._store.failed.items() if f.failed_at < cutoff][:10_000]
            for ident in old:
                del self._store.failed[ident]
            removed = len(old)
            while self._store.completed and removed < 10_000 and self._store.completed[0][0] < cutoff:
                self._store.completed.popleft()
                removed += 1
            return removed


class EnqueueReplacesAnExistingId(MemoryDriver):
    """An enqueue reusing the id of an unfinished job stores it again, over the first."""

    def _insert(self, message: Message, body: bytes, now: float) -> str | None:
        self._store.records.pop(message.id, None)
        return super()._insert(message, body, now)
