"""The ``memory`` driver: the reference implementation of the driver contract.

Everything lives in the process, behind one lock, so it is fast, thread-safe
and gone when the process exits. Use it in tests and for work that may be
lost on restart. ``memory://`` gives every driver instance its own store;
``memory://NAME`` shares one store among the drivers of a process that use
the same name.

Messages are stored encoded, exactly as a real backend would hold them, so
what a worker receives is a fresh decoded copy and a malformed record is
handled as on any other backend.

Over 400 lines: as the reference implementation it declares every capability,
and each operation is written next to the others it shares the store and its
lock with, so a reader sees the whole contract kept in one place.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from jobs_core import workflow_state as ws
from jobs_core.driver import Capability, Driver
from jobs_core.errors import InvalidURL, MalformedMessage
from jobs_core.flow_state import TENANT_HEADER, TokenGrant, take_from_window
from jobs_core.message import (
    Delivery,
    FailedJob,
    Message,
    QueueStats,
    ScheduleRecord,
    new_id,
    validate_queue_name,
)
from jobs_core.serializer import loads
from jobs_core.status import (
    CANCEL_FINISHED,
    CANCEL_NOT_FOUND,
    CANCEL_REMOVED,
    CANCEL_REQUESTED,
    CANCELLED,
    DELAYED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    JobStatus,
    Progress,
    live_status,
    results_ttl,
)
from jobs_core.urls import redact_url
from jobs_core.worker_records import WORKER_EXPIRY, WorkerRecord
from jobs_core.workflow_state import WORKFLOW_HEADER, WorkflowRecord, job_cancelled, job_finished

WAITING = "waiting"
RESERVED = "reserved"


@dataclass
class _Record:
    id: str
    queue: str
    body: bytes
    priority: int
    available_at: float
    seq: int
    version: int = 0
    state: str = WAITING
    receipt: str = ""
    lease_expires_at: float = 0.0
    unique_key: str | None = None
    tenant: str | None = None


@dataclass
class _Running:
    """What is known of a running job beyond its record: worker, progress, a cancel request."""

    worker: str | None = None
    progress: Progress | None = None
    cancel: bool = False


class _Kept:
    """A finished job kept for ``results_ttl`` (its result still JSON text: decoded when read)."""

    __slots__ = ("attempts", "finished_at", "name", "progress", "queue", "result", "state")

    def __init__(  # noqa: PLR0917 (built on the hot path: positional is cheapest)
        self,
        state: str,
        queue: str,
        name: str,
        attempts: int,
        result: str | None,
        progress: Progress | None,
        finished_at: float,
    ) -> None:
        self.state = state
        self.queue = queue
        self.name = name
        self.attempts = attempts
        self.result = result
        self.progress = progress
        self.finished_at = finished_at

    def status(self, job_id: str) -> JobStatus:
        """The :class:`JobStatus` of this record."""
        return JobStatus(
            id=job_id,
            state=self.state,
            queue=self.queue,
            name=self.name,
            attempts=self.attempts,
            progress=self.progress,
            result=None if self.result is None else loads(self.result),
            finished_at=self.finished_at,
        )


class MemoryStore:
    """The data of one memory backend. All access holds ``condition``."""

    def __init__(self) -> None:
        self.condition = threading.Condition(threading.Lock())
        self.records: dict[str, _Record] = {}
        self.ready: dict[str, list[tuple[int, float, int, int, str]]] = {}
        self.delayed: dict[str, list[tuple[float, int, int, str]]] = {}
        self.leases: list[tuple[float, str, str]] = []
        self.unique: dict[str, tuple[str, float | None]] = {}
        self.completed: deque[tuple[float, str]] = deque()
        self.failed: dict[str, FailedJob] = {}
        self.schedules: dict[str, ScheduleRecord] = {}
        self.known_queues: set[str] = set()
        self.counter = itertools.count()
        self.results: dict[str, _Kept] = {}
        self.result_order: deque[tuple[float, str]] = deque()
        self.running: dict[str, _Running] = {}
        self.workflows: dict[str, WorkflowRecord] = {}
        #: Ids of plainly dispatched jobs some workflow waits for (``after=``).
        self.watched: set[str] = set()
        self.paused: set[str] = set()
        self.grants: dict[str, deque[tuple[float, int]]] = {}
        self.slots: dict[str, dict[str, float]] = {}
        #: Due messages of tenants (``jobs-tenant``), per queue and tenant, and the
        #: round-robin ring of a queue's sources ("" for its messages without a tenant).
        self.tenants: dict[str, dict[str, list[tuple[int, float, int, int, str]]]] = {}
        self.rings: dict[str, deque[str]] = {}
        self.workers: dict[str, WorkerRecord] = {}


_SHARED: dict[str, MemoryStore] = {}
_SHARED_LOCK = threading.Lock()


class MemoryDriver(Driver):
    """In-process driver with the full contract. URL: ``memory://[NAME]``."""

    name: ClassVar[str] = "memory"
    schemes: ClassVar[tuple[str, ...]] = ("memory",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.DELAY,
            Capability.PRIORITY,
            Capability.UNIQUE,
            Capability.FAILED_STORE,
            Capability.RETRY_FAILED,
            Capability.STATS,
            Capability.COMPLETED_COUNT,
            Capability.PURGE,
            Capability.PRUNE,
            Capability.SCHEDULES,
            Capability.BLOCKING_RESERVE,
            Capability.ATOMIC_BATCH,
            Capability.RAW_INJECTION,
            Capability.LEASE_HANDOFF,
            Capability.IDEMPOTENT_ENQUEUE,
            Capability.STATUS,
            Capability.PROGRESS,
            Capability.CANCEL,
            Capability.WORKFLOWS,
            Capability.QUEUE_PAUSE,
            Capability.RATE_LIMITS,
            Capability.CONCURRENCY_LIMITS,
            Capability.TENANT_FAIRNESS,
            Capability.WORKERS,
            Capability.JOB_LISTING,
        }
    )

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__(url or "memory://", **options)
        parts = urlsplit(self.url or "memory://")
        if parts.scheme != "memory":
            raise InvalidURL(
                f"not a memory URL: {redact_url(str(url))!r} (expected 'memory://' or 'memory://NAME')"
            )
        store_name = (parts.netloc + parts.path).strip("/") or options.get("name", "")
        if "max_message_bytes" in options:
            self.max_message_bytes = int(options["max_message_bytes"])
        if "results_ttl" in options:
            self.results_ttl = results_ttl(options["results_ttl"])
        elif "results_ttl" in (query := parse_qs(parts.query)):
            self.results_ttl = results_ttl(query["results_ttl"][-1])
        if store_name:
            with _SHARED_LOCK:
                self._store = _SHARED.setdefault(store_name, MemoryStore())
        else:
            self._store = MemoryStore()

    @classmethod
    def from_config(cls, url: str | None = None, options: Mapping[str, Any] | None = None) -> Driver:
        """``memory://NAME`` or ``driver="memory", name=NAME``."""
        return cls(url, **dict(options or {}))

    # -- helpers (caller holds the lock) -------------------------------------

    def _push(self, rec: _Record, now: float) -> None:
        rec.version += 1
        rec.state = WAITING
        rec.receipt = ""
        if rec.available_at > now:
            heapq.heappush(
                self._store.delayed.setdefault(rec.queue, []),
                (rec.available_at, rec.seq, rec.version, rec.id),
            )
        else:
            heapq.heappush(
                self._ready_heap(rec),
                (-rec.priority, rec.available_at, rec.seq, rec.version, rec.id),
            )

    def _ready_heap(self, rec: _Record) -> list[tuple[int, float, int, int, str]]:
        """The heap of due messages ``rec`` goes on: its queue's, or its tenant's in the queue."""
        store = self._store
        if rec.tenant is None:
            return store.ready.setdefault(rec.queue, [])
        tenants = store.tenants.setdefault(rec.queue, {})
        heap = tenants.get(rec.tenant)
        if heap is None:
            heap = tenants[rec.tenant] = []
            ring = store.rings.setdefault(rec.queue, deque([""]))
            ring.append(rec.tenant)
        return heap

    def _pop_ready(self, queue: str) -> tuple[int, float, int, int, str] | None:
        """The next due message of ``queue``: the sources (tenants, and the messages
        without one) take turns, each in priority and due order.
        """
        store = self._store
        tenants = store.tenants.get(queue)
        if not tenants:
            heap = store.ready.get(queue)
            return heapq.heappop(heap) if heap else None
        ring = store.rings[queue]
        for _ in range(len(ring)):
            source = ring[0]
            ring.rotate(-1)
            heap = store.ready.get(queue) if source == "" else tenants.get(source)
            if heap:
                return heapq.heappop(heap)
            if source != "":
                ring.remove(source)
                del tenants[source]
        return None

    def _insert(self, message: Message, body: bytes, now: float) -> str | None:
        store = self._store
        if message.id in store.records:
            return message.id  # the job with this id is stored and unfinished: nothing to add
        if message.unique_key is not None:
            held = store.unique.get(message.unique_key)
            if held is not None:
                holder, expires = held
                if holder in store.records and (expires is None or expires > now):
                    return None
            expires_at = None if message.unique_ttl is None else now + message.unique_ttl
            store.unique[message.unique_key] = (message.id, expires_at)
        rec = _Record(
            id=message.id,
            queue=message.queue,
            body=body,
            priority=message.priority,
            available_at=message.available_at,
            seq=next(store.counter),
            unique_key=message.unique_key,
            tenant=message.headers.get(TENANT_HEADER) if message.headers else None,
        )
        store.records[rec.id] = rec
        store.known_queues.add(rec.queue)
        self._push(rec, now)
        return rec.id

    def _release_unique(self, rec: _Record) -> None:
        if rec.unique_key is not None:
            held = self._store.unique.get(rec.unique_key)
            if held is not None and held[0] == rec.id:
                del self._store.unique[rec.unique_key]

    def _expire_leases(self, now: float) -> None:
        store = self._store
        while store.leases and store.leases[0][0] <= now:
            _, receipt, ident = heapq.heappop(store.leases)
            rec = store.records.get(ident)
            if (
                rec is not None
                and rec.state == RESERVED
                and rec.receipt == receipt
                and rec.lease_expires_at <= now
            ):
                self._push(rec, now)

    def _promote(self, queue: str, now: float) -> None:
        delayed = self._store.delayed.get(queue)
        while delayed and delayed[0][0] <= now:
            _, _, version, ident = heapq.heappop(delayed)
            rec = self._store.records.get(ident)
            if rec is not None and rec.version == version and rec.state == WAITING:
                heapq.heappush(
                    self._ready_heap(rec),
                    (-rec.priority, rec.available_at, rec.seq, rec.version, rec.id),
                )

    def _owned(self, delivery: Delivery) -> _Record | None:
        # The handle is the record's key; a raw record's body may carry another id.
        rec = self._store.records.get(delivery.handle if delivery.handle is not None else delivery.id)
        if rec is None or rec.state != RESERVED or rec.receipt != delivery.receipt:
            return None
        return rec

    def _to_failed(self, rec: _Record, message: Message | None, error: str, now: float) -> None:
        del self._store.records[rec.id]
        self._store.running.pop(rec.id, None)
        self._release_unique(rec)
        if message is not None:
            entry = FailedJob(
                id=message.id,
                name=message.name,
                queue=message.queue,
                payload=message.payload,
                attempts=message.attempts,
                error=error,
                failed_at=now,
                message=message,
            )
        else:
            entry = FailedJob(
                id=rec.id,
                name="",
                queue=rec.queue,
                payload=None,
                attempts=0,
                error=error,
                failed_at=now,
                raw=rec.body.decode("utf-8", "replace"),
            )
        self._store.failed.pop(entry.id, None)
        self._store.failed[entry.id] = entry

    def _next_wake(self, queues: Sequence[str]) -> float | None:
        times = [self._store.leases[0][0]] if self._store.leases else []
        for queue in queues:
            delayed = self._store.delayed.get(queue)
            if delayed:
                times.append(delayed[0][0])
        return min(times) if times else None

    # -- the hot path -------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        """Store messages atomically (all validated before any is stored)."""
        self.check_open()
        bodies = self.validate(messages)
        with self._store.condition:
            now = time.time()
            ids = [self._insert(m, b, now) for m, b in zip(messages, bodies, strict=True)]
            self._store.condition.notify_all()
        return ids

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages; waits up to ``timeout`` for one."""
        self.check_open()
        queues = [validate_queue_name(q) for q in queues]
        deadline = time.monotonic() + max(0.0, timeout)
        store = self._store
        with store.condition:
            while True:
                now = time.time()
                self._expire_leases(now)
                found: list[Delivery] = []
                # One random token per call, numbered per delivery: a receipt is never
                # reused, and no random bytes are read (a system call) per job.
                token = os.urandom(8).hex() + ":"
                for queue in queues:
                    self._promote(queue, now)
                    while len(found) < limit:
                        item = self._pop_ready(queue)
                        if item is None:
                            break
                        _, _, _, version, ident = item
                        rec = store.records.get(ident)
                        if rec is None or rec.version != version or rec.state != WAITING:
                            continue
                        try:
                            message = Message.decode(rec.body)
                        except MalformedMessage as exc:
                            self._to_failed(rec, None, f"malformed message: {exc}", now)
                            continue
                        if message.queue != queue:  # a raw record naming another queue
                            message = message.replace(queue=queue)
                        rec.state = RESERVED
                        rec.receipt = f"{token}{len(found)}"
                        rec.lease_expires_at = now + lease
                        heapq.heappush(store.leases, (rec.lease_expires_at, rec.receipt, rec.id))
                        found.append(Delivery(message, rec.receipt, rec.lease_expires_at, rec.id))
                    if len(found) >= limit:
                        break
                if found or self._closed:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return found
                wake = self._next_wake(queues)
                if wake is not None:
                    remaining = min(remaining, max(0.0, wake - time.time()) + 0.001)
                store.condition.wait(remaining)

    def ack(self, delivery: Delivery) -> None:
        """Finish the message; ignored if not held by this delivery."""
        self.ack_many((delivery,))

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Finish several messages under one lock (each ignored if not held by its delivery)."""
        store = self._store
        with store.condition:
            now = time.time()
            for delivery in deliveries:
                rec = self._owned(delivery)
                if rec is None:
                    continue
                flow = self._flow_message(delivery.message)
                if flow is not None:
                    tx = _Transaction(self)
                    job_finished(tx, flow, True, delivery.result)
                    tx.commit()
                del store.records[rec.id]
                store.running.pop(rec.id, None)
                self._release_unique(rec)
                store.completed.append((now, rec.queue))

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Back on the queue after ``delay`` with ``attempts + 1``."""
        with self._store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return
            now = time.time()
            message = delivery.message.replace(
                attempts=delivery.message.attempts + 1,
                last_error=error,
                available_at=now + max(0.0, delay),
            )
            rec.body = message.encode()
            rec.available_at = message.available_at
            rec.seq = next(self._store.counter)
            self._push(rec, now)
            self._store.condition.notify_all()

    def release(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Back on the queue unchanged (attempts not counted)."""
        with self._store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return
            now = time.time()
            if delay > 0:
                rec.available_at = now + delay
                rec.body = delivery.message.replace(available_at=rec.available_at).encode()
            self._push(rec, now)
            self._store.condition.notify_all()

    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease; ``False`` if it was lost."""
        with self._store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return False
            rec.lease_expires_at = time.time() + lease
            heapq.heappush(self._store.leases, (rec.lease_expires_at, rec.receipt, rec.id))
            return True

    def fail(self, delivery: Delivery, error: str) -> None:
        """Into the failed store with ``attempts + 1``."""
        with self._store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return
            message = delivery.message.replace(attempts=delivery.message.attempts + 1, last_error=error)
            tx = None
            flow = self._flow_message(message)
            if flow is not None:
                tx = _Transaction(self)
                job_finished(tx, flow, False, error=error)
            self._to_failed(rec, message, error, time.time())
            if tx is not None:
                tx.commit()

    # -- administration -----------------------------------------------------

    def stats(self, queue: str | None = None) -> QueueStats:
        """Counts per queue, or over all queues when ``queue`` is ``None``."""
        if queue is not None:
            validate_queue_name(queue)
        with self._store.condition:
            now = time.time()
            pending = delayed = reserved = 0
            for rec in self._store.records.values():
                if queue is not None and rec.queue != queue:
                    continue
                if rec.state == RESERVED and rec.lease_expires_at > now:
                    reserved += 1
                elif rec.state == RESERVED or rec.available_at <= now:
                    pending += 1
                else:
                    delayed += 1
            completed = sum(1 for _, q in self._store.completed if queue is None or q == queue)
            failed = sum(1 for f in self._store.failed.values() if queue is None or f.queue == queue)
        return QueueStats(pending, delayed, reserved, completed, failed)

    def stats_by_queue(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts of each queue, all read under one hold of the store's lock."""
        for name in queues or ():
            validate_queue_name(name)
        with self._store.condition:
            now = time.time()
            names = sorted(self._store.known_queues) if queues is None else list(queues)
            counts = {name: [0, 0, 0, 0, 0] for name in names}
            for rec in self._store.records.values():
                row = counts.get(rec.queue)
                if row is None:
                    continue
                if rec.state == RESERVED and rec.lease_expires_at > now:
                    row[2] += 1
                elif rec.state == RESERVED or rec.available_at <= now:
                    row[0] += 1
                else:
                    row[1] += 1
            for _, name in self._store.completed:
                if name in counts:
                    counts[name][3] += 1
            for failed in self._store.failed.values():
                if failed.queue in counts:
                    counts[failed.queue][4] += 1
        return {name: QueueStats(*row) for name, row in counts.items()}

    def queues(self) -> list[str]:
        """Every queue that ever held a message in this store."""
        with self._store.condition:
            return sorted(self._store.known_queues)

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first."""
        with self._store.condition:
            entries = [f for f in reversed(self._store.failed.values()) if queue is None or f.queue == queue]
        return entries[offset : offset + limit]

    def retry_failed(self, failed_id: str) -> bool:
        """Back on its queue, attempts reset; ``False`` if unknown."""
        with self._store.condition:
            entry = self._store.failed.pop(failed_id, None)
            if entry is None:
                return False
            now = time.time()
            if entry.message is not None:
                message = replace(entry.message, attempts=0, available_at=now)
                self._insert(replace(message, unique_key=None), message.encode(), now)
            elif entry.id not in self._store.records:
                rec = _Record(
                    id=entry.id,
                    queue=entry.queue,
                    body=(entry.raw or "").encode(),
                    priority=0,
                    available_at=now,
                    seq=next(self._store.counter),
                )
                self._store.records[rec.id] = rec
                self._push(rec, now)
            self._store.condition.notify_all()
            return True

    def forget_failed(self, failed_id: str) -> bool:
        """Delete one failed job."""
        with self._store.condition:
            return self._store.failed.pop(failed_id, None) is not None

    def purge(self, queue: str) -> int:
        """Remove the waiting (pending and delayed) messages of ``queue``; a job
        of a workflow is counted cancelled in it (see :meth:`_cancel_in_workflow`).
        """
        validate_queue_name(queue)
        with self._store.condition:
            self._expire_leases(time.time())
            doomed = [r for r in self._store.records.values() if r.queue == queue and r.state == WAITING]
            tx = _Transaction(self)  # one for all: each record is loaded and saved once
            counted = 0
            for rec in doomed:
                counted += self._cancel_in_workflow(rec.body, tx) is not None
                del self._store.records[rec.id]
                self._store.running.pop(rec.id, None)
                self._release_unique(rec)
            self._store.ready.pop(queue, None)
            self._store.tenants.pop(queue, None)
            self._store.rings.pop(queue, None)
            self._store.delayed.pop(queue, None)
            if counted:
                tx.commit()
            return len(doomed)

    def prune(self, older_than: float) -> int:
        """Remove completed and failed records and finished workflows older than ``older_than`` seconds."""
        with self._store.condition:
            cutoff = time.time() - older_than
            removed = 0
            kept: deque[tuple[float, str]] = deque()
            for finished_at, queue in self._store.completed:
                if finished_at < cutoff:
                    removed += 1
                else:
                    kept.append((finished_at, queue))
            self._store.completed = kept
            for ident in [i for i, f in self._store.failed.items() if f.failed_at < cutoff]:
                del self._store.failed[ident]
                removed += 1
            workflows = self._store.workflows
            for ident in [
                i for i, r in workflows.items() if r.finished_at is not None and r.finished_at < cutoff
            ]:
                del workflows[ident]
                removed += 1
            self._expire_results(cutoff)
            return removed

    def inject_raw(self, queue: str, body: bytes) -> None:
        """Store ``body`` as-is, as if another producer wrote it."""
        validate_queue_name(queue)
        with self._store.condition:
            now = time.time()
            rec = _Record(new_id(), queue, bytes(body), 0, now, next(self._store.counter))
            self._store.records[rec.id] = rec
            self._store.known_queues.add(queue)
            self._push(rec, now)
            self._store.condition.notify_all()

    # -- status, results, progress, cancellation -------------------------------

    def _expire_results(self, cutoff: float) -> None:
        """Forget results of jobs finished before ``cutoff`` (caller holds the lock)."""
        store = self._store
        while store.result_order and store.result_order[0][0] < cutoff:
            finished_at, ident = store.result_order.popleft()
            kept = store.results.get(ident)
            if kept is not None and kept.finished_at == finished_at:
                del store.results[ident]

    def _keep(self, ident: str, kept: _Kept) -> None:
        """Keep a finished job for ``results_ttl`` (caller holds the lock)."""
        if self.results_ttl <= 0:
            return
        store = self._store
        store.results.pop(ident, None)
        store.results[ident] = kept
        store.result_order.append((kept.finished_at, ident))
        order = store.result_order
        if order[0][0] < kept.finished_at - self.results_ttl:
            self._expire_results(kept.finished_at - self.results_ttl)

    def job_status(self, job_id: str) -> JobStatus | None:
        """From the stored record, the failed store, or the results kept."""
        store = self._store
        with store.condition:
            now = time.time()
            rec = store.records.get(job_id)
            if rec is not None:
                return self._live_status(rec, now)
            finished: list[JobStatus] = []
            kept = store.results.get(job_id)
            if kept is not None and kept.finished_at >= now - self.results_ttl:
                finished.append(kept.status(job_id))
            entry = store.failed.get(job_id)
        if entry is not None:
            finished.append(_failed_status(entry))
        if not finished:
            return None
        return max(finished, key=lambda status: status.finished_at or 0.0)

    def _live_status(self, rec: _Record, now: float) -> JobStatus:
        running = self._store.running.get(rec.id) or _Running()
        return live_status(
            rec.id,
            rec.queue,
            rec.body,
            reserved=rec.state == RESERVED,
            available_at=rec.available_at,
            lease_expires_at=rec.lease_expires_at,
            now=now,
            worker=running.worker,
            progress=running.progress,
            cancel_requested=running.cancel,
        )

    def list_jobs(
        self, state: str, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobStatus]:
        """Scans the records (waiting and running), the results kept, or the failed store."""
        store = self._store
        with store.condition:
            now = time.time()
            if state == FAILED:
                entries = [f for f in reversed(store.failed.values()) if queue is None or f.queue == queue]
                return [_failed_status(entry) for entry in entries[offset : offset + limit]]
            if state in (SUCCEEDED, CANCELLED):
                cutoff = now - self.results_ttl
                kept = [
                    (ident, k)
                    for ident, k in reversed(store.results.items())
                    if k.state == state and k.finished_at >= cutoff and (queue is None or k.queue == queue)
                ]
                kept.sort(key=lambda item: -item[1].finished_at)
                return [k.status(ident) for ident, k in kept[offset : offset + limit]]
            live = [
                (rec, status)
                for rec in store.records.values()
                if queue is None or rec.queue == queue
                for status in (self._live_status(rec, now),)
                if status.state == state
            ]
        if state == RUNNING:
            live.sort(key=lambda item: (item[0].lease_expires_at, item[0].seq))
        elif state == DELAYED:
            live.sort(key=lambda item: (item[0].available_at, item[0].seq))
        else:
            live.sort(key=lambda item: (-item[0].priority, item[0].available_at, item[0].seq))
        return [status for _, status in live[offset : offset + limit]]

    def save_worker(self, record: WorkerRecord) -> None:
        """Keep the record; forget those stale for ``WORKER_EXPIRY`` seconds."""
        with self._store.condition:
            workers = self._store.workers
            workers[record.id] = record
            cutoff = time.time() - WORKER_EXPIRY
            for ident in [i for i, r in workers.items() if r.last_seen < cutoff]:
                del workers[ident]

    def remove_worker(self, worker_id: str) -> bool:
        """Forget the record; ``False`` if there was none."""
        with self._store.condition:
            return self._store.workers.pop(worker_id, None) is not None

    def workers(self) -> list[WorkerRecord]:
        """The records written within ``WORKER_EXPIRY`` seconds, oldest worker first."""
        cutoff = time.time() - WORKER_EXPIRY
        with self._store.condition:
            found = [r for r in self._store.workers.values() if r.last_seen >= cutoff]
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def ack_results(self, deliveries: Sequence[Delivery], results: Sequence[str | None]) -> None:
        """:meth:`ack_many`, keeping each result for ``results_ttl`` seconds."""
        store = self._store
        with store.condition:
            now = time.time()
            for delivery, result in zip(deliveries, results, strict=True):
                rec = self._owned(delivery)
                if rec is None:
                    continue
                flow = self._flow_message(delivery.message)
                if flow is not None:
                    tx = _Transaction(self)
                    job_finished(tx, flow, True, delivery.result)
                    tx.commit()
                del store.records[rec.id]
                running = store.running.pop(rec.id, None)
                self._release_unique(rec)
                store.completed.append((now, rec.queue))
                message = delivery.message
                progress = None if running is None else running.progress
                kept = _Kept(SUCCEEDED, rec.queue, message.name, message.attempts + 1, result, progress, now)
                self._keep(message.id, kept)

    def save_progress(self, delivery: Delivery, progress: Progress | None, worker: str) -> None:
        """Keep the worker and the progress; ignored if the lease was lost."""
        with self._store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return
            running = self._store.running.setdefault(rec.id, _Running())
            running.worker = worker
            if progress is not None:
                running.progress = progress

    def cancel(self, job_id: str) -> str:
        """Remove a waiting job, or mark a running one for its worker."""
        store = self._store
        with store.condition:
            now = time.time()
            self._expire_leases(now)
            rec = store.records.get(job_id)
            if rec is None:
                kept = store.results.get(job_id)
                found = job_id in store.failed or (
                    kept is not None and kept.finished_at >= now - self.results_ttl
                )
                return CANCEL_FINISHED if found else CANCEL_NOT_FOUND
            if rec.state == RESERVED:
                store.running.setdefault(rec.id, _Running()).cancel = True
                return CANCEL_REQUESTED
            status = self._live_status(rec, now)
            tx = self._cancel_in_workflow(rec.body)
            del store.records[rec.id]
            store.running.pop(rec.id, None)
            self._release_unique(rec)
            self._keep(rec.id, _Kept(CANCELLED, rec.queue, status.name, status.attempts, None, None, now))
            if tx is not None:
                tx.commit()
            return CANCEL_REMOVED

    def _cancel_in_workflow(self, body: bytes, tx: _Transaction | None = None) -> _Transaction | None:
        """Count a removed job cancelled in its workflow, if it has one, in ``tx`` (a new one by
        default); return the transaction to commit after the removal, ``None`` if nothing was counted.
        """
        try:
            message = Message.decode(body)
        except MalformedMessage:
            return None
        flow = self._flow_message(message)
        if flow is None:
            return None
        tx = _Transaction(self) if tx is None else tx
        job_cancelled(tx, flow)
        return tx

    def _flow_message(self, message: Message) -> Message | None:
        """The message to count in a workflow when its job is removed, or ``None``.

        A job of a workflow carries its header; a watched job (one some
        ``after=`` waits for) is counted as if it carried its own id, once.
        """
        if WORKFLOW_HEADER in message.headers:
            return message
        watched = self._store.watched
        if not watched or message.id not in watched:
            return None
        watched.discard(message.id)
        return message.replace(headers={**message.headers, WORKFLOW_HEADER: message.id})

    def cancel_requested(self, deliveries: Sequence[Delivery]) -> set[str]:
        """Ids among ``deliveries`` with a cancel request."""
        with self._store.condition:
            running = self._store.running
            if not running:
                return set()
            return {d.id for d in deliveries if (r := running.get(d.id)) is not None and r.cancel}

    def ack_cancelled(self, delivery: Delivery) -> None:
        """Remove the job as cancelled."""
        store = self._store
        with store.condition:
            rec = self._owned(delivery)
            if rec is None:
                return
            now = time.time()
            tx = None
            flow = self._flow_message(delivery.message)
            if flow is not None:
                tx = _Transaction(self)
                job_cancelled(tx, flow)
            del store.records[rec.id]
            running = store.running.pop(rec.id, None)
            self._release_unique(rec)
            if tx is not None:
                tx.commit()
            message = delivery.message
            progress = None if running is None else running.progress
            kept = _Kept(CANCELLED, rec.queue, message.name, message.attempts + 1, None, progress, now)
            self._keep(message.id, kept)

    # -- schedules ----------------------------------------------------------

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace; keeps the stored ``last_tick`` if the new one is ``None``."""
        with self._store.condition:
            old = self._store.schedules.get(record.name)
            if old is not None and record.last_tick is None:
                record = replace(record, last_tick=old.last_tick)
            self._store.schedules[record.name] = replace(record, data=dict(record.data))

    def schedules(self) -> list[ScheduleRecord]:
        """All schedules by name."""
        with self._store.condition:
            return [self._store.schedules[n] for n in sorted(self._store.schedules)]

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule."""
        with self._store.condition:
            return self._store.schedules.pop(name, None) is not None

    def claim_tick(self, name: str, tick: float) -> bool:
        """Compare-and-set of ``last_tick``."""
        with self._store.condition:
            record = self._store.schedules.get(name)
            if record is None or (record.last_tick is not None and tick <= record.last_tick):
                return False
            self._store.schedules[name] = replace(record, last_tick=tick)
            return True

    def advance_schedule(self, name: str, expected: float | None, next_run_at: float | None) -> bool:
        """Compare-and-set of ``next_run_at``."""
        with self._store.condition:
            record = self._store.schedules.get(name)
            if record is None or record.next_run_at != expected:
                return False
            self._store.schedules[name] = replace(record, next_run_at=next_run_at, updated_at=time.time())
            return True

    # -- workflows ----------------------------------------------------------

    @contextlib.contextmanager
    def workflow_transaction(self) -> Iterator[_Transaction]:
        """Changes under the store's lock, applied together when the block ends without error."""
        self.check_open()
        with self._store.condition:
            tx = _Transaction(self)
            yield tx
            tx.commit()

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """A copy of the record, or ``None``."""
        self.check_open()
        with self._store.condition:
            record = self._store.workflows.get(workflow_id)
            return None if record is None else _copy(record)

    def workflows(self, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkflowRecord]:
        """Copies of the records of ``kind``, newest first."""
        self.check_open()
        with self._store.condition:
            found = [r for r in self._store.workflows.values() if kind is None or r.kind == kind]
            found.sort(key=lambda r: (-r.created_at, r.id))
            return [_copy(r) for r in found[offset : offset + limit]]

    # -- flow control -------------------------------------------------------

    def pause_queue(self, queue: str) -> bool:
        """Set the pause flag of ``queue``."""
        validate_queue_name(queue)
        with self._store.condition:
            if queue in self._store.paused:
                return False
            self._store.paused.add(queue)
            return True

    def resume_queue(self, queue: str) -> bool:
        """Clear the pause flag of ``queue``."""
        validate_queue_name(queue)
        with self._store.condition:
            if queue not in self._store.paused:
                return False
            self._store.paused.discard(queue)
            self._store.condition.notify_all()
            return True

    def paused_queues(self) -> list[str]:
        """The paused queues, sorted."""
        with self._store.condition:
            return sorted(self._store.paused)

    def take_tokens(self, key: str, count: int, per: float, want: int = 1) -> TokenGrant:
        """Sliding window of the grants of the last ``per`` seconds."""
        with self._store.condition:
            window = self._store.grants.setdefault(key, deque())
            return take_from_window(window, count, per, want, time.time())

    def acquire_slot(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """One of ``limit`` leased slots of ``key``."""
        with self._store.condition:
            now = time.time()
            held = self._store.slots.setdefault(key, {})
            for other in [h for h, until in held.items() if until <= now]:
                del held[other]
            if holder not in held and len(held) >= limit:
                return False
            held[holder] = now + lease
            return True

    def extend_slot(self, key: str, holder: str, lease: float) -> bool:
        """Renew the lease of ``holder``'s slot."""
        with self._store.condition:
            now = time.time()
            held = self._store.slots.get(key, {})
            if held.get(holder, 0.0) <= now:
                held.pop(holder, None)
                return False
            held[holder] = now + lease
            return True

    def release_slot(self, key: str, holder: str) -> None:
        """Free ``holder``'s slot."""
        with self._store.condition:
            held = self._store.slots.get(key)
            if held is not None:
                held.pop(holder, None)
                if not held:
                    del self._store.slots[key]

    def release_slots(self, slots: Sequence[tuple[str, str]]) -> None:
        """Free each ``(key, holder)`` slot, under one lock."""
        with self._store.condition:
            for key, holder in slots:
                held = self._store.slots.get(key)
                if held is not None:
                    held.pop(holder, None)
                    if not held:
                        del self._store.slots[key]

    def close(self) -> None:
        """Wake blocked reservers; the store stays for other drivers sharing it."""
        super().close()
        with self._store.condition:
            self._store.condition.notify_all()


def _failed_status(entry: FailedJob) -> JobStatus:
    """The status of a job in the failed store."""
    return JobStatus(
        id=entry.id,
        state=FAILED,
        queue=entry.queue,
        name=entry.name,
        attempts=entry.attempts,
        error=entry.error,
        finished_at=entry.failed_at,
        payload=entry.payload,
    )


def _copy(record: WorkflowRecord) -> WorkflowRecord:
    return replace(record, state=copy.deepcopy(record.state))


class _Transaction:
    """A :class:`~jobs_core.workflow_state.WorkflowStore` over a memory store (caller holds its lock).

    Writes are kept aside and applied by :meth:`commit`, so a block that
    raises changes nothing.
    """

    def __init__(self, driver: MemoryDriver) -> None:
        self._driver = driver
        self._saved: dict[str, WorkflowRecord] = {}
        self._enqueued: list[tuple[Message, bytes]] = []
        self._failed: list[tuple[Message, str]] = []
        self._removed: set[str] = set()
        self._watched: set[str] = set()

    def load(self, workflow_id: str) -> WorkflowRecord | None:
        """The record as this transaction sees it (a private copy)."""
        record = self._saved.get(workflow_id)
        if record is None:
            stored = self._driver._store.workflows.get(workflow_id)
            if stored is None:
                return None
            record = self._saved[workflow_id] = _copy(stored)
        return record

    def save(self, record: WorkflowRecord) -> None:
        """Keep ``record`` for the commit."""
        self._saved[record.id] = record

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Check ``messages`` now; store them at the commit."""
        bodies = self._driver.validate(messages)
        self._enqueued.extend(zip(messages, bodies, strict=True))

    def fail(self, message: Message, error: str) -> None:
        """Put ``message`` in the failed store at the commit."""
        self._failed.append((message, error))

    def remove_waiting(self, workflow_id: str) -> list[str]:
        """Mark the waiting jobs of ``workflow_id`` for removal; return their ids."""
        store = self._driver._store
        removed = []
        for rec in store.records.values():
            if rec.state != WAITING or rec.id in self._removed:
                continue
            try:
                headers = Message.decode(rec.body).headers
            except MalformedMessage:
                continue
            if headers.get(WORKFLOW_HEADER) == workflow_id:
                self._removed.add(rec.id)
                removed.append(rec.id)
        removed += [m.id for m, _ in self._enqueued if m.headers.get(WORKFLOW_HEADER) == workflow_id]
        self._enqueued = [(m, b) for m, b in self._enqueued if m.headers.get(WORKFLOW_HEADER) != workflow_id]
        return removed

    def watch(self, job_id: str) -> str | None:
        """Watch a stored job from the commit on, or say how it ended (see ``WorkflowStore.watch``)."""
        store = self._driver._store
        rec = store.records.get(job_id)
        if rec is not None and job_id not in self._removed:
            try:
                headers = Message.decode(rec.body).headers
            except MalformedMessage:
                headers = {}
            if WORKFLOW_HEADER in headers:
                return ws.MEMBER
            self._watched.add(job_id)
            return ws.WATCHED
        kept = store.results.get(job_id)
        if kept is not None and kept.finished_at < time.time() - self._driver.results_ttl:
            kept = None
        failed = store.failed.get(job_id)
        if failed is not None and (kept is None or failed.failed_at >= kept.finished_at):
            return ws.FAILED
        if kept is not None:
            return ws.CANCELLED if kept.state == CANCELLED else ws.SUCCEEDED
        return None

    def commit(self) -> None:
        """Apply every change kept (the caller holds the store's lock)."""
        driver, store = self._driver, self._driver._store
        now = time.time()
        store.workflows.update(self._saved)
        store.watched.update(self._watched)
        for ident in self._removed:
            rec = store.records.pop(ident, None)
            if rec is not None:
                driver._release_unique(rec)
        for message, body in self._enqueued:
            driver._insert(message, body, now)
        for message, error in self._failed:
            entry = FailedJob(
                id=message.id,
                name=message.name,
                queue=message.queue,
                payload=message.payload,
                attempts=message.attempts,
                error=error,
                failed_at=now,
                message=message,
            )
            store.failed.pop(entry.id, None)
            store.failed[entry.id] = entry
        if self._enqueued:
            store.condition.notify_all()
