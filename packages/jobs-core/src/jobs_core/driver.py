"""The :class:`Driver` base class and the :class:`Capability` flags.

A driver moves messages in and out of one backend. The hot path (``enqueue``,
``reserve``, ``ack``) is plain method calls. Optional operations have a
default that raises :class:`~jobs_core.errors.UnsupportedOperation`; a driver
that implements one lists its :class:`Capability` in ``capabilities``, and the
conformance suite tests exactly what is declared.

Contract summary (the conformance suite is the executable form; the guide
``docs/writing-a-driver.md`` answers the finer questions):

* ``enqueue`` is durable when it returns: the backend acknowledged the write
  under its own durability settings, which the driver never lowers for
  enqueues. A batch is atomic where the backend allows (``ATOMIC_BATCH``).
* ``reserve`` returns up to ``limit`` due messages, each leased to the caller
  alone until ``lease`` seconds pass; higher ``priority`` first, then the
  earliest ``available_at``, then enqueue order; queues are served in the
  order given. It may wait up to ``timeout`` seconds for work.
* A lease that ends without ``ack``/``retry``/``fail``/``release`` makes the
  message available again (at-least-once delivery), in its old place in line.
* ``ack`` is idempotent. Operations on a delivery whose lease was taken by
  another reserve do nothing and return ``False`` where they return a value.
  Between the end of a lease and the next reserve of that message, an
  operation of the old holder either takes effect whole or does nothing.
* "Now" is the caller's wall clock, :func:`time.time` (Unix seconds): due
  times, lease ends, ``failed_at`` and the ``prune`` cutoff are all read from
  it, never from a server's clock. ``timeout`` is a duration.

Over 400 lines: the whole contract, in one place, each operation documented where it is
declared (what it receives, returns and raises, and when it is called).
"""

from __future__ import annotations

import abc
import contextlib
import enum
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from jobs_core import options
from jobs_core.distributions import distribution_version
from jobs_core.errors import ConfigurationError, DriverClosed, PayloadTooLarge, UnsupportedOperation
from jobs_core.flow_state import TokenGrant
from jobs_core.message import (
    Delivery,
    FailedJob,
    Message,
    MessageBatch,
    QueueStats,
    ScheduleRecord,
    validate_queue_name,
)
from jobs_core.status import DEFAULT_RESULTS_TTL, JobStatus, Progress
from jobs_core.worker_records import WorkerRecord

if TYPE_CHECKING:
    from jobs_core.workflow_state import WorkflowRecord, WorkflowStore


class Capability(str, enum.Enum):
    """Optional features a driver may declare.

    Everything not listed here (enqueue, reserve with leases, ack, retry,
    release, extend, close) is required of every driver.
    """

    #: Messages with ``available_at`` in the future are held until due.
    DELAY = "delay"
    #: ``reserve`` returns higher ``priority`` first within a queue.
    PRIORITY = "priority"
    #: ``unique_key`` drops a message while another with the same key is unfinished.
    UNIQUE = "unique"
    #: ``fail`` keeps the job in a failed store that ``failed`` lists.
    FAILED_STORE = "failed_store"
    #: ``retry_failed`` puts a failed job back on its queue.
    RETRY_FAILED = "retry_failed"
    #: ``stats`` reports pending, delayed, reserved and failed counts.
    STATS = "stats"
    #: ``stats`` also counts completed jobs (kept until pruned).
    COMPLETED_COUNT = "completed_count"
    #: ``purge`` removes the waiting messages of a queue.
    PURGE = "purge"
    #: ``prune`` removes finished and failed records older than a cutoff.
    PRUNE = "prune"
    #: ``save_schedule``, ``schedules``, ``remove_schedule`` and ``claim_tick``.
    SCHEDULES = "schedules"
    #: ``reserve`` wakes on new work before ``timeout`` ends (push wake-up).
    BLOCKING_RESERVE = "blocking_reserve"
    #: ``enqueue`` of several messages is all-or-nothing.
    ATOMIC_BATCH = "atomic_batch"
    #: ``enqueue`` can join the caller's own transaction (outbox pattern).
    TRANSACTIONAL_ENQUEUE = "transactional_enqueue"
    #: ``inject_raw`` writes an arbitrary record, for tests of malformed input.
    RAW_INJECTION = "raw_injection"
    #: A lease that ends un-acked frees the message for every reserver on the
    #: backend, not only for the process that held it (which, without this
    #: capability, gets it again; others get it once that process is gone).
    LEASE_HANDOFF = "lease_handoff"
    #: ``enqueue`` of a message whose id is stored and unfinished stores
    #: nothing and returns the id (a producer may safely send again).
    IDEMPOTENT_ENQUEUE = "idempotent_enqueue"
    #: Messages of one ``key`` start in the order they were stored, at most
    #: their ``key_concurrency`` at once (a driver without it stores the key
    #: and ignores it).
    ORDERED_KEYS = "ordered_keys"
    #: ``job_status`` tells where a job is, and ``ack_results`` keeps finished
    #: jobs' return values for ``results_ttl`` seconds.
    STATUS = "status"
    #: ``save_progress`` records what a running job reported, for ``job_status``.
    PROGRESS = "progress"
    #: ``cancel`` removes a waiting job or asks a running job's worker to stop
    #: it (``cancel_requested``, ``ack_cancelled``).
    CANCEL = "cancel"
    #: Chains, batches and dependencies: ``workflow_transaction``,
    #: ``workflow``, ``workflows``, and ``ack``/``fail`` that count a finished
    #: workflow job in the transaction that removes it (see
    #: :mod:`jobs_core.workflow_state`).
    WORKFLOWS = "workflows"
    #: ``pause_queue``, ``resume_queue`` and ``paused_queues``: pause flags of
    #: queues held in the backend, seen by every worker sharing it.
    QUEUE_PAUSE = "queue_pause"
    #: ``take_tokens``: rate limits (N starts per period, per key) counted in
    #: the backend, so that they hold across every worker process.
    RATE_LIMITS = "rate_limits"
    #: ``acquire_slot``, ``extend_slot`` and ``release_slot``: at most N jobs
    #: of one key at once across every worker, each slot held under a lease.
    CONCURRENCY_LIMITS = "concurrency_limits"
    #: ``reserve`` serves the tenants of a queue (the ``jobs-tenant`` header of
    #: ``Job.tenant``) round-robin, and the messages without a tenant as one
    #: more: one tenant's backlog delays another's job by at most one turn each.
    TENANT_FAIRNESS = "tenant_fairness"
    #: ``save_worker``, ``remove_worker`` and ``workers``: the records of the
    #: workers seen recently (see :mod:`jobs_core.worker_records`).
    WORKERS = "workers"
    #: ``list_jobs``: the jobs in one state (running with their worker, lease
    #: end and progress; waiting; finished ones kept as results or failed).
    JOB_LISTING = "job_listing"


def _check_key(key: object, concurrency: object) -> None:
    """Raise :class:`~jobs_core.errors.ConfigurationError` for a bad ordering key or concurrency."""
    if key is None:
        raise ConfigurationError(f"message key_concurrency {concurrency!r} given without a key")
    options.ordering_key("message key", key)
    options.key_concurrency("message key_concurrency", concurrency)


class Driver(abc.ABC):
    """Base class of every driver.

    Subclasses set ``name`` (the driver's registered name), ``schemes`` (URL
    schemes it answers to, without a ``+dialect`` suffix) and
    ``capabilities``, and implement the abstract methods. A driver is built
    with :meth:`from_config` and must be safe to use from several threads.
    """

    #: The driver's registered name (``"memory"``, ``"database"``, ``"kafka"``).
    name: ClassVar[str] = ""
    #: URL schemes this driver handles (``("sqlite", "postgresql")``).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: Optional features this driver implements.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Largest encoded message, in bytes, that ``enqueue`` accepts.
    max_message_bytes: int = 1_048_576
    #: Seconds during which ``reserve(timeout=0)`` may still miss a message
    #: that ``enqueue`` stored (a broker's fetch in flight). Workers told to
    #: stop when the queue is empty wait this long before concluding so.
    reserve_settle_time: float = 0.0
    #: Whether ``ack_many`` is a round trip worth overlapping: a worker then
    #: acknowledges a finished batch on a helper thread while it reserves the
    #: next (and from any thread, ``ack_many`` must be safe). Leave it off for
    #: drivers whose acks are local bookkeeping or serialise with ``reserve``.
    ack_in_background: bool = False
    #: Seconds that finished jobs' status and results are kept (``STATUS``);
    #: ``0`` keeps none (workers then acknowledge with :meth:`ack_many`).
    results_ttl: float = DEFAULT_RESULTS_TTL

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self.url = url
        self.options: dict[str, Any] = dict(options)
        self._closed = False

    # -- construction -------------------------------------------------------

    @classmethod
    def from_config(cls, url: str | None = None, options: Mapping[str, Any] | None = None) -> Driver:
        """Build a driver from a URL and/or the dict form of the configuration.

        The default calls ``cls(url, **options)``. Override to translate the
        dict form (``brokers=..., group_id=...``) into the driver's settings.
        Raise :class:`~jobs_core.errors.ConfigurationError` on bad settings.
        """
        return cls(url, **dict(options or {}))

    @property
    def version(self) -> str:
        """Version of the distribution that provides this driver."""
        return distribution_version(type(self).__module__)

    def supports(self, capability: Capability) -> bool:
        """Whether ``capability`` is declared."""
        return capability in self.capabilities

    def require(self, capability: Capability, operation: str = "") -> None:
        """Raise :class:`UnsupportedOperation` unless ``capability`` is declared."""
        if capability not in self.capabilities:
            raise UnsupportedOperation(self.name or type(self).__name__, capability.value, operation)

    def check_open(self) -> None:
        """Raise :class:`~jobs_core.errors.DriverClosed` if :meth:`close` was called."""
        if self._closed:
            raise DriverClosed(f"driver {self.name!r} is closed")

    def validate(self, messages: Sequence[Message]) -> list[bytes]:
        """Check names and sizes of ``messages`` and return their encodings.

        Drivers call this at the top of ``enqueue`` so that a bad batch is
        refused whole, before anything is written. A message that asks for a
        feature the driver does not declare (a future ``available_at``
        without ``DELAY``, a non-zero ``priority`` without ``PRIORITY``, a
        ``unique_key`` without ``UNIQUE``) raises
        :class:`~jobs_core.errors.UnsupportedOperation` rather than having
        the feature silently ignored.
        """
        if isinstance(messages, MessageBatch):
            return self._validate_batch(messages)
        encoded = []
        now = time.time()
        queues: set[str] = set()
        for message in messages:
            if message.queue not in queues:
                queues.add(validate_queue_name(message.queue))
            if message.available_at > now:
                self.require(Capability.DELAY, "a message with a future available_at")
            if message.priority != 0:
                self.require(Capability.PRIORITY, "a message with a non-zero priority")
            if message.unique_key is not None:
                self.require(Capability.UNIQUE, "a message with a unique_key")
            if message.key is not None or message.key_concurrency != 1:
                _check_key(message.key, message.key_concurrency)
            body = message.encode()
            if len(body) > self.max_message_bytes:
                raise PayloadTooLarge(len(body), self.max_message_bytes, self.name)
            encoded.append(body)
        return encoded

    def _validate_batch(self, batch: MessageBatch) -> list[bytes]:
        """:meth:`validate` for a bulk batch: shared fields checked once, no message objects."""
        self._check_common(batch)
        _, bodies = batch.encoded()
        self.check_sizes(bodies)
        return bodies

    def check_batch(self, batch: MessageBatch) -> None:
        """:meth:`validate` for a bulk batch, without encoding it.

        For a driver that writes a batch as it reads its encodings
        (:meth:`MessageBatch.encoded <jobs_core.message.MessageBatch.encoded>`
        a chunk at a time) and cannot take back what it wrote: every check
        :meth:`validate` makes, sizes included
        (:meth:`MessageBatch.largest <jobs_core.message.MessageBatch.largest>`),
        before anything is written.
        """
        self._check_common(batch)
        largest = batch.largest()
        if largest > self.max_message_bytes:
            raise PayloadTooLarge(largest, self.max_message_bytes, self.name)

    def _check_common(self, batch: MessageBatch) -> None:
        common = batch.common
        validate_queue_name(common["queue"])
        if common["available_at"] > time.time():
            self.require(Capability.DELAY, "a message with a future available_at")
        if common["priority"] != 0:
            self.require(Capability.PRIORITY, "a message with a non-zero priority")
        if common["unique_key"] is not None:
            self.require(Capability.UNIQUE, "a message with a unique_key")
        if common["key"] is not None or common["key_concurrency"] != 1:
            _check_key(common["key"], common["key_concurrency"])

    def check_sizes(self, bodies: Sequence[bytes]) -> None:
        """Raise :class:`~jobs_core.errors.PayloadTooLarge` for the first body over the limit.

        The limit is :attr:`max_message_bytes`.
        """
        limit = self.max_message_bytes
        for body in bodies:
            if len(body) > limit:
                raise PayloadTooLarge(len(body), limit, self.name)

    # -- the hot path -------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        """Store ``messages``; durable when this returns.

        Called by every dispatch, with one message or a batch (a bulk
        dispatch passes a :class:`~jobs_core.message.MessageBatch`). Call
        :meth:`validate` first, so that a bad batch stores nothing.

        Returns, for each message in order, its id, or ``None`` if it was
        dropped because its ``unique_key`` is held by an unfinished message
        (keys are global to the backend, across queues). With
        ``IDEMPOTENT_ENQUEUE``, a message whose id is already stored and
        unfinished (waiting, delayed or reserved; also earlier in the same
        batch) is not stored again and leaves the stored one untouched, and
        its id is returned; once that job finished, the id may be enqueued
        as a new job. Without it, such a message may be stored a second time.
        Raises :class:`~jobs_core.errors.InvalidName`,
        :class:`~jobs_core.errors.PayloadTooLarge` (nothing is written), or
        :class:`~jobs_core.errors.BackendUnavailable`.
        """

    @abc.abstractmethod
    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages from ``queues`` (served in order).

        Called by a worker's fetch loop with the queues it serves, how many
        jobs it has room for, the lease length and how long it may wait.
        Waits up to ``timeout`` seconds when nothing is due. Returns one
        :class:`~jobs_core.message.Delivery` per leased message: a fresh
        ``receipt`` naming this lease, ``lease_expires_at`` (wall clock), and a
        ``handle`` that is the driver's own locator of the stored record (the
        later operations find the record by it, never by the id in the
        body, which for a record written by other means may differ). The
        delivered message's ``queue`` is the queue it was reserved from.
        Records that cannot be decoded are moved to the failed store with the
        reason (when the driver has one) and are not returned.
        """

    def settled(self, queues: Sequence[str], timeout: float) -> bool:
        """Whether ``reserve`` on ``queues`` now sees every message stored before this call.

        Waits up to ``timeout`` seconds for it. A worker told to stop when its
        queues are empty stops only once this is ``True`` and a ``reserve``
        still finds nothing. The default is ``True`` at once (``reserve`` sees
        every stored message); a broker-backed driver answers ``False`` while
        it is still joining its consumer group or fetching, and raises
        :class:`~jobs_core.errors.OperationTimedOut` when it cannot know
        within its own time limit.
        """
        return True

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Mark the delivery done. Idempotent; ignored if the lease was lost.

        Called by a worker when the job returned. Unique keys the job held are
        released; with ``COMPLETED_COUNT`` the job is counted completed.
        """

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack several deliveries; drivers override this to batch the round trip.

        Called by a worker for the jobs it finished within ``ack_interval``;
        the same contract as :meth:`ack` for each delivery.
        """
        for delivery in deliveries:
            self.ack(delivery)

    @abc.abstractmethod
    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Put the message back after ``delay`` seconds with ``attempts + 1``
        and ``last_error = error``.

        Called by a worker when a job raised and has retries left. The message
        is due at now + ``delay`` and takes its place in line by that time:
        behind the messages already due. It keeps its id and unique key.
        Ignored if the lease was lost.
        """

    @abc.abstractmethod
    def release(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Give the message back unrun, without counting an attempt.

        Called by a worker that stops (shutdown) with leased jobs it will not
        run. With ``delay`` 0 the message is due at once and keeps its old
        place in line (ahead of messages enqueued after it); with a delay it
        is due at now + ``delay``. Ignored if the lease was lost.
        """

    @abc.abstractmethod
    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease for ``lease`` more seconds from now.

        Called by a worker's heartbeat while a job runs. Returns ``True`` if
        the lease is held until now + ``lease``, ``False`` if it had already
        been lost (the worker then knows another may run the job).
        """

    @abc.abstractmethod
    def fail(self, delivery: Delivery, error: str) -> None:
        """Finish the message as failed with ``attempts + 1``: into the failed
        store (with ``error``, which holds the traceback) when the driver has
        one, otherwise dropped.

        Called by a worker when a job used up its retries, or cannot run at
        all (an unknown name). Unique keys are released. Ignored if the lease
        was lost.
        """

    def enqueue_in(self, transaction: Any, messages: Sequence[Message]) -> list[str | None]:
        """Store ``messages`` inside the caller's open transaction (outbox pattern).

        ``transaction`` is the driver's native transaction object, passed
        through unchanged from ``dispatch(..., transaction=...)``: for the
        database driver a SQLAlchemy ``Connection`` or ``Session``; for a
        non-SQL backend, whatever its client groups writes with (a Redis
        ``MULTI`` pipeline the caller executes). The messages exist if and
        only if the caller commits it. Returns what :meth:`enqueue` returns;
        an object of the wrong kind raises
        :class:`~jobs_core.errors.ConfigurationError` naming its type.
        """
        raise UnsupportedOperation(self.name, Capability.TRANSACTIONAL_ENQUEUE.value)

    # -- administration (optional) ------------------------------------------

    def stats(self, queue: str | None = None) -> QueueStats:
        """Counts for ``queue``, or summed over all queues."""
        raise UnsupportedOperation(self.name, Capability.STATS.value)

    def queues(self) -> list[str]:
        """Names of the queues that hold or held messages (best effort)."""
        raise UnsupportedOperation(self.name, Capability.STATS.value, "listing queues")

    def stats_by_queue(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts of each of ``queues`` (default: :meth:`queues`), read as one snapshot where
        the backend allows, so that they add up to the total of that moment.

        The default calls :meth:`stats` once per queue; drivers that can read
        every queue at once override it.
        """
        names = list(self.queues() if queues is None else queues)
        return {name: self.stats(name) for name in names}

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first."""
        raise UnsupportedOperation(self.name, Capability.FAILED_STORE.value)

    def retry_failed(self, failed_id: str) -> bool:
        """Put a failed job back on its queue with its attempts reset.

        Returns ``False`` if no failed job has that id.
        """
        raise UnsupportedOperation(self.name, Capability.RETRY_FAILED.value)

    def forget_failed(self, failed_id: str) -> bool:
        """Delete one failed job; ``False`` if there was none."""
        raise UnsupportedOperation(self.name, Capability.FAILED_STORE.value, "forgetting failed jobs")

    def purge(self, queue: str) -> int:
        """Remove the pending and delayed messages of ``queue``; return how many.

        With ``WORKFLOWS``, a removed job of a batch or chain, or one a
        dispatch with ``after=`` waits for, is counted ``cancelled`` in its
        workflow as :meth:`cancel` counts it (its batch can still finish and
        fire ``finally``; what waits for it fails with the reason).
        """
        raise UnsupportedOperation(self.name, Capability.PURGE.value)

    def prune(self, older_than: float) -> int:
        """Remove completed and failed records finished more than ``older_than``
        seconds ago; return how many were removed.

        Called by ``jobs prune`` and by housekeeping. The count is of jobs:
        each completed job (``COMPLETED_COUNT``) and each failed-store entry
        (malformed records included) finished before now - ``older_than``
        counts one, however the backend stores them, and one call removes
        them all, however many. Unfinished messages and schedules are never
        removed.
        """
        raise UnsupportedOperation(self.name, Capability.PRUNE.value)

    def inject_raw(self, queue: str, body: bytes) -> None:
        """Write ``body`` as-is onto ``queue`` (tests of malformed input).

        The record is stored under an id of the driver's choosing; if
        ``body`` decodes, its delivery carries the id written in it and the
        queue it is on, and is handled by its ``handle`` like any other.
        """
        raise UnsupportedOperation(self.name, Capability.RAW_INJECTION.value)

    # -- schedules (optional) ------------------------------------------------

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace the schedule named ``record.name``.

        Keeps the stored ``last_tick`` if the record's is ``None``.
        """
        raise UnsupportedOperation(self.name, Capability.SCHEDULES.value)

    def schedules(self) -> list[ScheduleRecord]:
        """All stored schedules, ordered by name."""
        raise UnsupportedOperation(self.name, Capability.SCHEDULES.value)

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule; ``False`` if there was none."""
        raise UnsupportedOperation(self.name, Capability.SCHEDULES.value)

    def claim_tick(self, name: str, tick: float) -> bool:
        """Claim the tick due at ``tick`` for schedule ``name``.

        Returns ``True`` for exactly one caller per tick, across every process
        sharing the backend: the claim succeeds only if ``tick`` is later than
        the schedule's stored ``last_tick``, which it then becomes. Returns
        ``False`` if the schedule does not exist.
        """
        raise UnsupportedOperation(self.name, Capability.SCHEDULES.value)

    def advance_schedule(self, name: str, expected: float | None, next_run_at: float | None) -> bool:
        """Set ``next_run_at`` of schedule ``name`` if it still equals ``expected``.

        A compare-and-set that leaves ``data``, ``paused`` and ``last_tick``
        alone, so a scheduler moving a schedule on never overwrites a
        concurrent pause or re-declaration. Returns ``False``, changing
        nothing, if the schedule does not exist or its ``next_run_at`` is no
        longer ``expected``.

        The default reads the schedules and saves the changed record, which is
        not atomic; drivers override it with one conditional update.

        .. versionadded:: 0.1
        """
        import dataclasses
        import time as _time

        for record in self.schedules():
            if record.name == name:
                if record.next_run_at != expected:
                    return False
                changed = dataclasses.replace(
                    record, next_run_at=next_run_at, last_tick=None, updated_at=_time.time()
                )
                self.save_schedule(changed)
                return True
        return False

    # -- status, results, progress, cancellation (optional) -----------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """Where the job ``job_id`` is, or ``None`` if the backend knows no such job.

        Called by ``Jobs.status``, ``Jobs.result`` (repeatedly, while it
        waits) and ``jobs status``; may be called from any thread. The answer
        (``STATUS``):

        * an unfinished job (the id its message carries): ``queued`` when due,
          ``delayed`` when due later (``available_at``), ``running`` while a
          lease on it holds (``lease_expires_at``; with ``PROGRESS``, the
          ``worker`` and ``progress`` last saved by :meth:`save_progress`);
          ``cancel_requested`` once :meth:`cancel` asked for it;
        * a job in the failed store: ``failed``, with its ``error`` and ``finished_at``;
        * a job acknowledged by :meth:`ack_results` or :meth:`ack_cancelled`
          less than ``results_ttl`` seconds ago: ``succeeded`` with its
          ``result`` (decoded JSON), or ``cancelled``;
        * when one id is found in several places (an id dispatched again after
          it finished), the unfinished job, else the latest finished.

        Never raises for an unknown id: it returns ``None``, which the facade
        turns into :class:`~jobs_core.errors.JobNotFound`.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.STATUS.value)

    def ack_results(self, deliveries: Sequence[Delivery], results: Sequence[str | None]) -> None:
        """:meth:`ack_many` that also keeps each job's result, for :meth:`job_status`.

        Called by a worker instead of :meth:`ack_many` when the driver has
        ``STATUS`` and :attr:`results_ttl` is above zero. ``results[i]`` is the
        JSON text of the return value of ``deliveries[i]`` (``None`` when it
        could not be encoded). The same contract as :meth:`ack` for each
        delivery; the result is stored only for deliveries whose lease was still
        held, in the same transaction (or write) as the ack where the backend
        allows, and kept ``results_ttl`` seconds. Records kept longer are
        removed by the driver on its own (at most a minute late) and by
        :meth:`prune` (``prune`` does not count them: the completed count
        already counts those jobs).

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.STATUS.value, "keeping results")

    def save_progress(self, delivery: Delivery, progress: Progress | None, worker: str) -> None:
        """Record what the running ``delivery`` last reported, and the ``worker`` running it.

        Called by a worker's heartbeat thread, at most about twice a second per
        job and only when something changed (``progress`` is ``None`` when the
        job reported nothing yet: only its worker is recorded). What is saved
        shows in :meth:`job_status` while the job runs. Ignored if the lease
        was lost; leaves a pending cancellation request in place. Records of
        a job are removed when it finishes (or at the latest by :meth:`prune`).
        (``PROGRESS``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.PROGRESS.value)

    def cancel(self, job_id: str) -> str:
        """Cancel the job ``job_id``; return what happened.

        Called by ``Jobs.cancel`` and ``jobs cancel``. A waiting job (queued or
        delayed) is removed at once, its unique key released, and answers
        :data:`~jobs_core.status.CANCEL_REMOVED` (with ``STATUS``, its status
        becomes ``cancelled``). A running job is marked, and answers
        :data:`~jobs_core.status.CANCEL_REQUESTED`: its worker learns of it
        through :meth:`cancel_requested` and ends it with :meth:`ack_cancelled`
        (if the lease ends first, the next reserve gets the job and the worker
        that holds it then sees the same request). A finished job answers
        :data:`~jobs_core.status.CANCEL_FINISHED`, an unknown id
        :data:`~jobs_core.status.CANCEL_NOT_FOUND`; neither changes anything.
        (``CANCEL``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CANCEL.value)

    def cancel_requested(self, deliveries: Sequence[Delivery]) -> set[str]:
        """The ids, among ``deliveries`` (held by the caller), whose cancellation was requested.

        Called by a worker's heartbeat thread about once a second while it
        holds deliveries, so it should be one cheap read. (``CANCEL``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CANCEL.value, "reading cancellation requests")

    def ack_cancelled(self, delivery: Delivery) -> None:
        """Finish ``delivery`` as cancelled: removed, never retried, its unique key released.

        Called by a worker for a job whose cancellation it saw, once the job
        stopped (or before it started). With ``STATUS`` its status becomes
        ``cancelled`` for ``results_ttl`` seconds. Ignored if the lease was
        lost. (``CANCEL``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CANCEL.value, "finishing cancelled jobs")

    def list_jobs(
        self, state: str, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobStatus]:
        """The jobs in ``state`` (one of :data:`~jobs_core.status.STATES`), ``limit`` from ``offset``.

        Called by ``Jobs.jobs``, ``jobs list`` and the dashboard; ``queue``
        keeps only that queue's jobs. Each answer is what :meth:`job_status`
        would say of the job. Order: ``running`` by lease end (the soonest
        first), ``queued`` in the order they would be reserved as far as the
        backend can tell (else oldest first), ``delayed`` by due time, and the
        finished states (``succeeded`` and ``cancelled`` from the results kept
        for ``results_ttl``, ``failed`` from the failed store) newest first.
        A job whose lease ended unrenewed is ``queued``. (``JOB_LISTING``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.JOB_LISTING.value)

    # -- workers seen recently (optional) -------------------------------------

    def save_worker(self, record: WorkerRecord) -> None:
        """Create or replace the record of the worker ``record.id``.

        Called by each worker's beacon thread when it starts and every few
        seconds after (:data:`~jobs_core.worker_records.BEACON_INTERVAL`).
        Records not renewed for
        :data:`~jobs_core.worker_records.WORKER_EXPIRY` seconds (workers
        killed without warning) are deleted here. (``WORKERS``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.WORKERS.value)

    def remove_worker(self, worker_id: str) -> bool:
        """Delete the record of ``worker_id`` (a worker stopping cleanly); ``False`` if there was none.

        (``WORKERS``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.WORKERS.value)

    def workers(self) -> list[WorkerRecord]:
        """The workers whose record was written less than ``WORKER_EXPIRY`` seconds ago, oldest first.

        Sorted by ``started_at``, then ``id``. (``WORKERS``)

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.WORKERS.value)

    # -- workflows (optional) -------------------------------------------------

    def workflow_transaction(self) -> contextlib.AbstractContextManager[WorkflowStore]:
        """A transaction over workflow records, jobs and the failed store (``WORKFLOWS``).

        Called by the workflow layer (:mod:`jobs_core.workflows`) to create a
        batch, chain or dependent job, to add jobs to a batch and to cancel
        one: it passes the yielded
        :class:`~jobs_core.workflow_state.WorkflowStore` to the functions of
        :mod:`jobs_core.workflow_state`. Everything written through the store
        is committed together when the block ends, or not at all if it
        raises (the exception propagates). ``load`` locks the record it reads
        until the end, so that two transactions changing one record run one
        after the other. Messages enqueued through the store are checked as
        :meth:`enqueue` checks them.

        A driver declaring ``WORKFLOWS`` also counts finished workflow jobs:
        its ``ack``, ``ack_many`` and ``fail``, for a delivery whose message
        carries :data:`~jobs_core.workflow_state.WORKFLOW_HEADER`, call
        :func:`jobs_core.workflow_state.job_finished` with such a store in the
        same transaction that removes the job (with
        :attr:`Delivery.result <jobs_core.message.Delivery.result>` on
        success), and only if they removed it. ``retry`` and ``release`` count
        nothing; ``retry_failed`` keeps the message's headers. With ``CANCEL``
        too, its ``cancel`` (of a waiting job) and ``ack_cancelled`` call
        :func:`jobs_core.workflow_state.job_cancelled` the same way.
        """
        raise UnsupportedOperation(self.name, Capability.WORKFLOWS.value)

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The record of workflow ``workflow_id`` as last committed, or ``None`` (``WORKFLOWS``).

        Called by ``Jobs.batch_status``, ``Jobs.chain_status`` and ``jobs batch ID``;
        reads without locking.
        """
        raise UnsupportedOperation(self.name, Capability.WORKFLOWS.value)

    def workflows(self, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkflowRecord]:
        """Stored workflow records of ``kind`` (every kind if ``None``), newest first (``WORKFLOWS``).

        Called by ``jobs batches``. ``limit`` and ``offset`` page through them.
        """
        raise UnsupportedOperation(self.name, Capability.WORKFLOWS.value)

    # -- flow control (optional) ---------------------------------------------
    #
    # The state that flow control needs and that only the backend can hold
    # atomically across worker processes. The worker's logic over it lives in
    # :mod:`jobs_core.flow`. "Now" is the caller's wall clock, as everywhere in
    # this contract: workers whose clocks disagree by ``d`` seconds may start
    # a rate-limited job up to ``d`` seconds early, and may take a slot whose
    # lease another worker's clock still counts as held ``d`` seconds longer.

    def pause_queue(self, queue: str) -> bool:
        """Pause ``queue`` for every worker sharing the backend (``QUEUE_PAUSE``).

        Called by ``Jobs.pause_queue`` and ``jobs queue pause``. Returns
        ``True`` if the queue was running, ``False`` if it was already
        paused. The flag persists until :meth:`resume_queue`; it does not
        touch the queue's messages, and a queue that holds no message yet
        may be paused. Raises :class:`~jobs_core.errors.InvalidName` for a
        bad queue name.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.QUEUE_PAUSE.value)

    def resume_queue(self, queue: str) -> bool:
        """Clear the pause flag of ``queue`` (``QUEUE_PAUSE``).

        Returns ``True`` if the queue was paused, ``False`` if it was not.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.QUEUE_PAUSE.value)

    def paused_queues(self) -> list[str]:
        """The names of the paused queues, sorted (``QUEUE_PAUSE``).

        Called by every worker about twice a second, so it must be one cheap
        read; a pause or resume by any process is seen by the next call.
        ``reserve`` itself need not skip paused queues: workers ask only for
        the queues that are not paused, and give back the deliveries of a
        queue paused while they held them unstarted.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.QUEUE_PAUSE.value)

    def take_tokens(self, key: str, count: int, per: float, want: int = 1) -> TokenGrant:
        """Take up to ``want`` starts of the rate limit ``count`` per ``per`` seconds on ``key``
        (``RATE_LIMITS``).

        Called by a worker for the rate-limited jobs it has just reserved,
        before it starts any of them. The limit is a sliding window: across
        every caller, at most ``count`` starts are granted for ``key`` in
        any interval of ``per`` seconds (each grant stamped with the
        caller's ``time.time()``, read while the key's window is held, so that
        stamps follow the order of the grants). Returns a
        :class:`~jobs_core.flow_state.TokenGrant` ``(granted, wait, at)``:
        how many of the ``want`` were granted (0 to ``want``); when fewer
        were, the seconds from ``at`` until the window has room again (0.0
        when all were granted); and ``at``, the stamp of the grants (a
        worker starts the granted jobs within moments of it). Grants are
        atomic under concurrent callers from any number of processes.
        ``count`` and ``per`` belong to the call, not to the key: the window
        is judged by the values passed.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.RATE_LIMITS.value)

    def acquire_slot(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Take one of the ``limit`` slots of ``key`` for ``holder`` until now + ``lease``
        (``CONCURRENCY_LIMITS``).

        Called by a worker before it starts a job with a concurrency limit;
        ``holder`` names the attempt (the delivery's receipt). Returns
        ``True`` if ``holder`` now holds a slot (also if it held one
        already: its lease is renewed), ``False`` if ``limit`` other
        holders hold unexpired slots. A slot whose lease ended is free, so a
        crashed worker's slot comes back after its lease. Atomic under
        concurrent callers from any number of processes.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CONCURRENCY_LIMITS.value)

    def acquire_slots(self, key: str, limit: int, holders: Sequence[str], lease: float) -> int:
        """Take slots of ``key`` for ``holders`` in order, each as :meth:`acquire_slot` would;
        how many of them, from the first, hold one (``CONCURRENCY_LIMITS``).

        A worker takes the slots of a reserved batch's jobs of one key at once.
        The default calls :meth:`acquire_slot` for each until one is refused;
        a driver may override it to take them all in one round trip.

        .. versionadded:: 0.2
        """
        granted = 0
        for holder in holders:
            if not self.acquire_slot(key, limit, holder, lease):
                break
            granted += 1
        return granted

    def extend_slot(self, key: str, holder: str, lease: float) -> bool:
        """Renew ``holder``'s slot of ``key`` until now + ``lease``; ``False`` if it was lost.

        Called by the worker's heartbeat while the job runs.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CONCURRENCY_LIMITS.value)

    def release_slot(self, key: str, holder: str) -> None:
        """Free ``holder``'s slot of ``key`` (the job finished); nothing if it holds none.

        .. versionadded:: 0.2
        """
        raise UnsupportedOperation(self.name, Capability.CONCURRENCY_LIMITS.value)

    def release_slots(self, slots: Sequence[tuple[str, str]]) -> None:
        """Free the slots ``(key, holder)`` of ``slots``, each as :meth:`release_slot` would
        (``CONCURRENCY_LIMITS``); nothing for a pair that holds none.

        A worker frees the slots of the jobs that finished since its last
        acknowledgement together, with that acknowledgement, so that a job
        with a concurrency limit costs no statement of its own when it ends.
        The default calls :meth:`release_slot` for each; a driver may
        override it to free them all in one round trip. A slot whose release
        is lost (the backend failed) is freed by its lease, as a crashed
        worker's.

        .. versionadded:: 0.2
        """
        for key, holder in slots:
            self.release_slot(key, holder)

    def ack_freeing_slots(
        self,
        deliveries: Sequence[Delivery],
        slots: Sequence[tuple[str, str]],
        results: Sequence[str | None] | None = None,
    ) -> None:
        """Acknowledge ``deliveries`` (as :meth:`ack_results` with ``results``, else as
        :meth:`ack_many`) and free ``slots`` as :meth:`release_slots` does
        (``CONCURRENCY_LIMITS``; ``slots`` is empty on a driver without it).

        A worker acknowledges its finished jobs and frees the slots of those
        that ended in one call. The default frees the slots, then
        acknowledges; a driver may do both in one transaction or round trip.
        Raises as the acknowledgement does; the worker then calls again
        with the same deliveries and slots (freeing a slot twice is nothing).

        .. versionadded:: 0.2
        """
        if slots:
            self.release_slots(slots)
        if results is None:
            self.ack_many(deliveries)
        else:
            self.ack_results(deliveries, results)

    # -- lifecycle ----------------------------------------------------------

    def ping(self) -> None:
        """Check that the backend answers; raise
        :class:`~jobs_core.errors.BackendUnavailable` if not.

        Required of every driver (the default only checks the driver is
        open: override it with one cheap round trip). Called once when
        ``jobs worker`` and ``jobs scheduler`` start, so that a backend that is
        down is reported at once; after :meth:`close` it raises
        :class:`~jobs_core.errors.DriverClosed`.
        """
        self.check_open()

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        self._closed = True

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from jobs_core.urls import redact_url

        url = redact_url(self.url) if self.url else ""
        return f"<{type(self).__name__} {self.name} {url}>".replace("  ", " ")
