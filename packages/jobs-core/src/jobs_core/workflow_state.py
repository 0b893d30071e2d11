"""Workflow state: the record a driver with ``WORKFLOWS`` keeps, and its transitions.

A *workflow* is a batch (jobs that run side by side, with callbacks), a chain
(jobs that run one after the other) or a dependent job (one job that waits for
other workflows). Each has one :class:`WorkflowRecord` in the backend. The
record changes only inside a driver's transaction, through the functions of
this module, which never do I/O themselves: they read and write through a
:class:`WorkflowStore` that the driver hands them (its
:meth:`~jobs_core.driver.Driver.workflow_transaction`). What they decide to
enqueue is written in that same transaction, so a callback or the next link
of a chain is stored exactly when the completion that causes it is counted.

A job belongs to a workflow when its message carries the header
:data:`WORKFLOW_HEADER` (the workflow id). When a driver with ``WORKFLOWS``
finishes such a job (``ack``, ``ack_many``, ``fail``), it calls
:func:`job_finished` (:func:`job_cancelled` for ``cancel`` and
``ack_cancelled``) in the transaction that removes the job, and only if that
transaction did remove it (the caller still held the lease): a completion is
then counted once however often a worker crashes, and never twice.

Over 400 lines: every transition of the three kinds of workflow is here, as
pure functions over one record, so that each driver runs the same rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobs_core import status as status_states
from jobs_core.errors import MalformedMessage, WorkflowError, WorkflowNotFound
from jobs_core.message import Message
from jobs_core.status import JobStatus

#: Header naming the workflow a message belongs to (its id).
WORKFLOW_HEADER = "jobs.workflow"
#: Header of a chain link: its index in the chain, from 0.
STEP_HEADER = "jobs.workflow.step"
#: Header of a chain link after the first: the previous link's return value, as JSON text.
RESULT_HEADER = "jobs.previous_result"
#: Header asking the worker to hand the job's return value to the driver (chain links).
WANTS_RESULT_HEADER = "jobs.workflow.result"

#: Kinds of workflow.
BATCH = "batch"
CHAIN = "chain"
JOB = "job"

#: Statuses of a workflow.
WAITING = "waiting"  # a dependent job waiting for its dependencies
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

#: Names of the batch callbacks, in the order they fire when a batch ends.
CALLBACKS = ("then", "catch", "finally")

#: What :meth:`WorkflowStore.watch` answers for a job now watched (waiting or running).
WATCHED = "watched"
#: What :meth:`WorkflowStore.watch` answers for a job of a batch or chain (not watched).
MEMBER = "member"


@dataclass
class WorkflowRecord:
    """The state of one workflow, as the backend holds it.

    ``total`` counts its jobs (a chain's links, a batch's jobs, 1 for a
    dependent job); ``succeeded``, ``failed`` and ``cancelled`` count those
    finished that way; the rest are pending. ``state`` holds what the kind
    needs, as JSON: encoded callback messages and which fired (batch), the
    encoded links and the position (chain), the parked message and what it
    waits for (dependent job), and for every kind the ids of failed jobs and
    of the workflows that depend on this one.
    """

    id: str
    kind: str
    status: str
    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    created_at: float = 0.0
    finished_at: float | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Jobs not finished yet."""
        return self.total - self.succeeded - self.failed - self.cancelled

    @property
    def finished(self) -> bool:
        """Whether the workflow has ended (succeeded, failed or cancelled, nothing pending)."""
        return self.finished_at is not None

    @property
    def failed_ids(self) -> list[str]:
        """Ids of the jobs that failed (in the order they failed)."""
        return list(self.state.get("failed_ids", []))

    def state_json(self) -> str:
        """``state`` as JSON text (what a driver stores)."""
        return json.dumps(self.state, separators=(",", ":"))

    @staticmethod
    def parse_state(text: str | bytes | None) -> dict[str, Any]:
        """The ``state`` dict from its JSON text (``{}`` for none)."""
        if not text:
            return {}
        value = json.loads(text)
        if not isinstance(value, dict):
            raise WorkflowError(f"workflow state is not a JSON object: {text!r:.80}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``--json`` prints); ``state`` left out."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "total": self.total,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "failed_ids": self.failed_ids,
            "finished": self.finished,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class WorkflowStore(Protocol):
    """What the transition functions need from a driver, inside one transaction.

    Nothing written through it is visible to others, or kept, unless the
    transaction commits; a driver rolls everything back when the block
    raises.
    """

    def load(self, workflow_id: str) -> WorkflowRecord | None:
        """The record ``workflow_id``, locked against other writers until the end of the transaction."""

    def save(self, record: WorkflowRecord) -> None:
        """Insert or replace ``record``."""

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` as :meth:`~jobs_core.driver.Driver.enqueue` would, in this transaction."""

    def fail(self, message: Message, error: str) -> None:
        """Put ``message`` straight into the failed store with ``error`` (it never ran)."""

    def remove_waiting(self, workflow_id: str) -> list[str]:
        """Delete the stored, unreserved jobs of workflow ``workflow_id``; return their ids.

        A job is the workflow's if its :data:`WORKFLOW_HEADER` is ``workflow_id``.
        """

    def watch(self, job_id: str) -> str | None:
        """Mark the stored job ``job_id`` (waiting or running) as watched, or say how it ended.

        Returns :data:`WATCHED` when the job is stored and carries no
        :data:`WORKFLOW_HEADER`: from the commit on, the ``ack``/``ack_many``/
        ``ack_results``, ``fail``, ``cancel`` and ``ack_cancelled`` that remove
        it count it as if it carried the header naming its own id (the
        workflow layer saves a record of kind :data:`JOB` with that id in the
        same transaction). :data:`MEMBER` when it carries the header (a job of
        a batch or chain; nothing marked). For a job no longer stored:
        :data:`SUCCEEDED` or :data:`CANCELLED` if its result is kept,
        :data:`FAILED` if it is in the failed store (the latest of the two),
        ``None`` if the id is unknown.
        """


# -- building records (the workflow layer) -------------------------------------


def new_record(kind: str, workflow_id: str, total: int, state: dict[str, Any]) -> WorkflowRecord:
    """A fresh record of ``kind``; a dependent job starts waiting, the others running."""
    status = WAITING if kind == JOB else RUNNING
    return WorkflowRecord(workflow_id, kind, status, total, created_at=time.time(), state=state)


def create(store: WorkflowStore, record: WorkflowRecord, messages: Sequence[Message]) -> None:
    """Store a new workflow and the jobs that start it, in the caller's transaction.

    ``record.state["after"]`` lists the workflows a dependent job waits for:
    each must exist (:class:`~jobs_core.errors.WorkflowNotFound` otherwise,
    and the transaction stores nothing); one that already finished counts at
    once. A dependent job whose dependencies all finished well is enqueued
    now; one with a failed dependency goes to the failed store now.
    """
    if store.load(record.id) is not None:
        raise WorkflowError(f"workflow {record.id!r} already exists")
    waiting: list[str] = []
    failed_reason = ""
    deps: list[WorkflowRecord] = []
    for dep_id in record.state.get("after", []):
        dep = store.load(dep_id)
        if dep is None:
            dep, reason = _watch_job(store, dep_id)
            if dep is None:
                failed_reason = failed_reason or reason
                continue
        deps.append(dep)
    for dep in deps:
        outcome = dep.state.get("outcome")
        if outcome is None:
            waiting.append(dep.id)
            dep.state.setdefault("dependents", []).append(record.id)
            store.save(dep)
        elif outcome != SUCCEEDED and not failed_reason:
            failed_reason = _dependency_reason(dep)
    if record.kind == JOB:
        record.state["waiting"] = waiting
        store.save(record)
        if failed_reason:
            _finish_dependent(store, record, failed_reason)
        elif not waiting:
            _start_dependent(store, record)
        return
    store.save(record)
    store.enqueue(messages)


def _watch_job(store: WorkflowStore, job_id: str) -> tuple[WorkflowRecord | None, str]:
    """A plainly dispatched job to wait for: its new watch record, or ``(None, reason)``.

    ``reason`` is empty for a job that already succeeded (nothing to wait
    for), and says why for one that failed or was cancelled; an unknown id
    raises :class:`~jobs_core.errors.WorkflowNotFound`.
    """
    found = store.watch(job_id)
    if found == WATCHED:
        watch = new_record(JOB, job_id, 1, {"watch": True})
        watch.status = RUNNING
        store.save(watch)
        return watch, ""
    if found == MEMBER:
        raise WorkflowError(
            f"job {job_id!r} is a job of a batch or chain: wait for the batch or chain id instead"
        )
    if found == SUCCEEDED:
        return None, ""
    if found in (FAILED, CANCELLED):
        return None, f"dependency job {job_id} {found}"
    raise WorkflowNotFound(
        f"no batch, chain or job with id {job_id!r} to wait for (a finished job is known while its "
        "result is kept, results_ttl, or while it is in the failed store)"
    )


def cancel_waiting_job(store: WorkflowStore, job_id: str) -> bool:
    """Cancel a dependent job still waiting for its dependencies (held in its record, not stored as a job).

    It ends ``cancelled`` without running and the workflows waiting for it
    fail with the reason. Returns ``False`` if ``job_id`` is not such a job.
    """
    record = store.load(job_id)
    if record is None or record.kind != JOB or record.status != WAITING:
        return False
    record.status = CANCELLED
    record.cancelled = 1
    record.finished_at = time.time()
    _settle_outcome(store, record, CANCELLED, "cancelled")
    store.save(record)
    return True


def held_job_status(store: WorkflowStore, job_id: str) -> JobStatus | None:
    """What ``Jobs.status`` says of a dependent job held in its record: ``waiting``
    (with what it waits for) or, once cancelled there, ``cancelled``; ``None`` for
    any other id (a started or failed dependent is a stored job by then).
    """
    record = store.load(job_id)
    if record is None or record.kind != JOB or record.status not in (WAITING, CANCELLED):
        return None
    try:
        message = Message.decode(record.state["message"].encode())
    except (KeyError, AttributeError, MalformedMessage):
        message = None
    state = status_states.WAITING if record.status == WAITING else status_states.CANCELLED
    return JobStatus(
        id=job_id,
        state=state,
        queue=message.queue if message else "",
        name=message.name if message else "",
        available_at=message.available_at if message else None,
        finished_at=record.finished_at,
        payload=message.payload if message and state == status_states.WAITING else None,
    )


def add(store: WorkflowStore, workflow_id: str, messages: Sequence[Message]) -> None:
    """Add ``messages`` (already carrying the batch's header) to a running batch."""
    record = _load(store, workflow_id)
    if record.kind != BATCH:
        raise WorkflowError(f"workflow {workflow_id!r} is a {record.kind}, not a batch: jobs cannot be added")
    if record.status != RUNNING or record.finished:
        raise WorkflowError(f"batch {workflow_id!r} is {record.status}: jobs can no longer be added")
    record.total += len(messages)
    store.save(record)
    store.enqueue(messages)


def cancel(store: WorkflowStore, workflow_id: str, kind: str = BATCH) -> bool:
    """Cancel a batch or a chain (``kind``): its waiting jobs are removed and counted cancelled.

    Jobs already running finish and are counted as they end. A batch's
    ``then`` and ``catch`` no longer fire, ``finally`` fires once nothing is
    pending. A chain enqueues no further link: every link not run yet counts
    cancelled, and the chain ends ``cancelled`` once a running link has
    ended; the workflows waiting for it fail with that reason. Returns
    ``False`` if it had already finished or was cancelled.
    """
    record = _load(store, workflow_id)
    if record.kind != kind:
        raise WorkflowError(f"workflow {workflow_id!r} is a {record.kind}, not a {kind}")
    if record.finished or record.status == CANCELLED:
        return False
    was = record.status
    record.status = CANCELLED
    failed_ids: list[str] = record.state.setdefault("failed_ids", [])
    removed = store.remove_waiting(workflow_id)
    for job_id in removed:
        if job_id in failed_ids:  # failed, retried from the failed store, waiting again
            failed_ids.remove(job_id)
            record.failed -= 1
    if kind == BATCH:
        record.cancelled += len(removed)
        _batch_maybe_finished(store, record)
    else:
        running = 1 if was == RUNNING and not removed else 0
        record.cancelled += record.pending - running
        if not running:
            record.finished_at = time.time()
            _settle_outcome(store, record, CANCELLED, "cancelled")
    store.save(record)
    return True


# -- transitions (drivers call these) ------------------------------------------


def job_finished(
    store: WorkflowStore, message: Message, succeeded: bool, result: Any = None, error: str = ""
) -> None:
    """Count one finished job of a workflow; enqueue what that finish causes.

    Called by a driver with ``WORKFLOWS`` in the transaction in which its
    ``ack``/``ack_many`` (``succeeded=True``, ``result`` from
    :attr:`Delivery.result <jobs_core.message.Delivery.result>`) or ``fail``
    (``succeeded=False``, ``error``) removed a job whose message carries
    :data:`WORKFLOW_HEADER`, and only if it did remove it. A message without
    the header, or naming a workflow that no longer exists (pruned), changes
    nothing.
    """
    workflow_id = message.headers.get(WORKFLOW_HEADER)
    if workflow_id is None:
        return
    record = store.load(workflow_id)
    if record is None:
        return
    if record.kind == BATCH:
        _batch_job(store, record, message, succeeded)
    elif record.kind == CHAIN:
        _chain_link(store, record, message, succeeded, result)
    else:
        _count(record, message, succeeded)
        if record.finished_at is None:
            record.finished_at = time.time()
        record.status = SUCCEEDED if record.failed == 0 else FAILED
        _settle_outcome(store, record, SUCCEEDED if succeeded else FAILED, error)
    store.save(record)


def job_cancelled(store: WorkflowStore, message: Message) -> None:
    """Count one cancelled job of a workflow; enqueue what that causes.

    Called by a driver with ``WORKFLOWS`` and ``CANCEL`` in the transaction
    in which its ``cancel`` removed a waiting job, or its ``ack_cancelled``
    a running one, whose message carries :data:`WORKFLOW_HEADER`, and only
    if it did remove it. The job counts ``cancelled`` and otherwise as a
    failure with the reason ``cancelled``: a batch fires ``catch`` and
    ``finally`` (an ``allow_failures`` batch goes on, ``then`` fires only
    if no job failed or was cancelled); a chain stops, ``cancelled``; a
    dependent job ends ``cancelled``; and the workflows waiting for either
    fail with that reason. A message without the header, or naming a
    workflow that no longer exists, changes nothing.
    """
    workflow_id = message.headers.get(WORKFLOW_HEADER)
    if workflow_id is None:
        return
    record = store.load(workflow_id)
    if record is None:
        return
    failed_ids: list[str] = record.state.setdefault("failed_ids", [])
    if message.id in failed_ids:  # failed, retried from the failed store, cancelled while waiting
        failed_ids.remove(message.id)
        record.failed -= 1
    if record.kind == BATCH:
        record.cancelled += 1
        if not record.finished:
            if not record.state.get("allow_failures") and record.status == RUNNING:
                _fire(store, record, "catch")
            _batch_maybe_finished(store, record)
    elif record.kind == CHAIN:
        try:
            index = int(message.headers.get(STEP_HEADER, "-1"))
        except ValueError:
            index = -1
        if not 0 <= index < len(record.state.get("links", [])):
            return
        record.cancelled += 1
        record.status = CANCELLED
        record.state["position"] = index
        if record.finished_at is None:
            record.finished_at = time.time()
        _settle_outcome(store, record, CANCELLED, f"link {index} ({message.name}) cancelled")
    else:
        record.cancelled += 1
        record.status = CANCELLED
        if record.finished_at is None:
            record.finished_at = time.time()
        _settle_outcome(store, record, CANCELLED, "cancelled")
    store.save(record)


def _load(store: WorkflowStore, workflow_id: str) -> WorkflowRecord:
    record = store.load(workflow_id)
    if record is None:
        raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
    return record


def _count(record: WorkflowRecord, message: Message, succeeded: bool) -> bool:
    """Count ``message``'s outcome; ``False`` if nothing changed (a failure counted before)."""
    failed_ids: list[str] = record.state.setdefault("failed_ids", [])
    if succeeded:
        if message.id in failed_ids:  # a failed job retried from the failed store
            failed_ids.remove(message.id)
            record.failed -= 1
        record.succeeded += 1
        return True
    if message.id in failed_ids:
        return False
    failed_ids.append(message.id)
    record.failed += 1
    return True


def _batch_job(store: WorkflowStore, record: WorkflowRecord, message: Message, succeeded: bool) -> None:
    if not _count(record, message, succeeded):
        return
    allow = bool(record.state.get("allow_failures"))
    if not succeeded and not allow and record.status == RUNNING:
        _fire(store, record, "catch")
    if record.finished:
        # A job retried from the failed store after the end: the counts change;
        # ``then`` fires if now every job succeeded and it never fired.
        if record.failed == 0 and record.cancelled == 0 and record.status != CANCELLED:
            record.status = SUCCEEDED
            _fire(store, record, "then")
        return
    _batch_maybe_finished(store, record)


def _batch_maybe_finished(store: WorkflowStore, record: WorkflowRecord) -> None:
    if record.pending > 0 or record.finished:
        return
    record.finished_at = time.time()
    if record.status == CANCELLED:
        _fire(store, record, "finally")
        _settle_outcome(store, record, CANCELLED, "")
        return
    allow = bool(record.state.get("allow_failures"))
    bad = record.failed + record.cancelled  # a job cancelled alone counts as a failure
    record.status = SUCCEEDED if bad == 0 else FAILED
    if bad == 0:
        _fire(store, record, "then")
    elif allow:
        _fire(store, record, "catch")
    _fire(store, record, "finally")
    well = bad == 0 or allow
    _settle_outcome(store, record, SUCCEEDED if well else FAILED, "")


def _fire(store: WorkflowStore, record: WorkflowRecord, callback: str) -> None:
    """Enqueue batch callback ``callback`` unless it fired before (exactly once)."""
    fired: list[str] = record.state.setdefault("fired", [])
    if callback in fired:
        return
    fired.append(callback)
    body = record.state.get("callbacks", {}).get(callback)
    if body is None:
        return
    message = Message.decode(body.encode())
    store.enqueue([message.replace(available_at=time.time())])


def _chain_link(
    store: WorkflowStore, record: WorkflowRecord, message: Message, succeeded: bool, result: Any
) -> None:
    try:
        index = int(message.headers.get(STEP_HEADER, "-1"))
    except ValueError:
        index = -1
    links: list[str] = record.state.get("links", [])
    if not 0 <= index < len(links):
        return
    if not _count(record, message, succeeded):
        return
    if record.status == CANCELLED:  # the link that ran on while the chain was cancelled
        if record.pending == 0 and record.finished_at is None:
            record.finished_at = time.time()
            _settle_outcome(store, record, CANCELLED, "cancelled")
        return
    if not succeeded:
        record.status = FAILED
        record.state["position"] = index
        _settle_outcome(store, record, FAILED, f"link {index} ({message.name}) failed")
        return
    record.state["position"] = index + 1
    if index + 1 < len(links):
        record.status = RUNNING
        following = Message.decode(links[index + 1].encode())
        headers = dict(following.headers)
        if result is not None:
            headers[RESULT_HEADER] = json.dumps(result, separators=(",", ":"))
        store.enqueue([following.replace(headers=headers, available_at=time.time())])
        return
    record.status = SUCCEEDED
    if record.finished_at is None:
        record.finished_at = time.time()
    _settle_outcome(store, record, SUCCEEDED, "")


def _settle_outcome(store: WorkflowStore, record: WorkflowRecord, outcome: str, reason: str) -> None:
    """Record the workflow's first outcome and tell the workflows waiting for it (once)."""
    if record.state.get("outcome") is not None:
        return
    record.state["outcome"] = outcome
    if reason:
        record.state["reason"] = reason
    for dependent_id in record.state.get("dependents", []):
        dependent = store.load(dependent_id)
        if dependent is None or dependent.status != WAITING:
            continue
        waiting: list[str] = dependent.state.get("waiting", [])
        if record.id in waiting:
            waiting.remove(record.id)
        if outcome != SUCCEEDED:
            _finish_dependent(store, dependent, _dependency_reason(record))
        elif not waiting:
            _start_dependent(store, dependent)
        store.save(dependent)


def _dependency_reason(dep: WorkflowRecord) -> str:
    outcome = dep.state.get("outcome")
    why = dep.state.get("reason")
    text = f"dependency {dep.kind} {dep.id} {outcome}"
    return f"{text}: {why}" if why else text


def _start_dependent(store: WorkflowStore, record: WorkflowRecord) -> None:
    record.status = RUNNING
    message = Message.decode(record.state["message"].encode())
    store.enqueue([message.replace(available_at=max(message.available_at, time.time()))])
    store.save(record)


def _finish_dependent(store: WorkflowStore, record: WorkflowRecord, reason: str) -> None:
    """A dependent job whose dependency failed: into the failed store, never run."""
    message = Message.decode(record.state["message"].encode())
    record.status = FAILED
    record.failed = 1
    record.state.setdefault("failed_ids", []).append(message.id)
    record.finished_at = time.time()
    store.fail(message, f"WorkflowError: {reason}")
    _settle_outcome(store, record, FAILED, reason)
    store.save(record)


def iter_records(records: Sequence[WorkflowRecord]) -> Iterator[WorkflowRecord]:
    """Newest first (what listings show)."""
    return iter(sorted(records, key=lambda r: (-r.created_at, r.id)))
