"""Chains, batches and dependencies, over the ``WORKFLOWS`` driver contract.

The layer only builds messages and records and hands them to the driver's
:meth:`~jobs_core.driver.Driver.workflow_transaction` through the functions of
:mod:`jobs_core.workflow_state`; every count and every decision to enqueue a
callback or the next link is made by the backend, in the transaction that
finishes a job. The facade's ``Jobs.chain``, ``Jobs.batch``,
``Jobs.batch_status``, ``Jobs.chain_status``, ``Jobs.cancel_batch``,
``Jobs.add_to_batch`` and ``Jobs.dispatch(..., after=[...])`` call in here.

A step is a job (a Job class or instance, a ``@job`` function, a registered
name) or a ``(job, payload)`` pair. A chain link's return value reaches the
next link as JSON: read it with :func:`previous_result`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs_core import workflow_state as ws
from jobs_core.context import current_job
from jobs_core.driver import Capability
from jobs_core.errors import JobNotRegistered, NoCurrentJob, WorkflowError, WorkflowNotFound
from jobs_core.ids import new_id
from jobs_core.job import Job, JobFunction, job_instance
from jobs_core.message import Message

if TYPE_CHECKING:
    from jobs_core.app import JobsApp
    from jobs_core.job import JobLike

#: A step of a chain or batch: a job, or a job and its payload.
Step = Any

_NO_RESULT = object()


@dataclass(frozen=True)
class WorkflowStatus:
    """Where a batch or chain stands, as :meth:`Jobs.batch_status` and
    :meth:`Jobs.chain_status` report it.

    ``pending`` jobs have not finished; ``failed_ids`` are the ids of the jobs
    that failed; ``finished`` is true once nothing is pending (a chain that
    stopped at a failed link is not finished: retrying the link resumes it).
    ``position`` is, for a chain, the index of the link running or failed
    (``total`` once every link succeeded).
    """

    id: str
    kind: str
    status: str
    total: int
    pending: int
    succeeded: int
    failed: int
    cancelled: int
    failed_ids: tuple[str, ...]
    finished: bool
    created_at: float
    finished_at: float | None
    position: int | None = None

    @property
    def done(self) -> int:
        """Jobs finished, whatever their outcome."""
        return self.total - self.pending

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``jobs batch ID --json``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "total": self.total,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "failed_ids": list(self.failed_ids),
            "finished": self.finished,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "position": self.position,
        }

    @classmethod
    def of(cls, record: ws.WorkflowRecord) -> WorkflowStatus:
        """The status of a stored record."""
        position = record.state.get("position", 0) if record.kind == ws.CHAIN else None
        return cls(
            id=record.id,
            kind=record.kind,
            status=record.status,
            total=record.total,
            pending=record.pending,
            succeeded=record.succeeded,
            failed=record.failed,
            cancelled=record.cancelled,
            failed_ids=tuple(record.failed_ids),
            finished=record.finished,
            created_at=record.created_at,
            finished_at=record.finished_at,
            position=position,
        )


def previous_result(default: Any = None) -> Any:
    """The return value of the previous link of the chain the current job is a link of.

    Call it inside a job. Returns ``default`` for the first link, when the
    previous link returned ``None``, or outside a chain.
    """
    try:
        headers = current_job().headers
    except NoCurrentJob:
        return default
    text = headers.get(ws.RESULT_HEADER)
    return default if text is None else json.loads(text)


def _split(step: Step, where: str) -> tuple[Any, Any]:
    """``(job, payload)`` of one step; a step of another shape raises :class:`WorkflowError`."""
    if isinstance(step, tuple):
        if len(step) != 2:
            raise WorkflowError(f"{where}: a step is a job or a (job, payload) pair, got a {len(step)}-tuple")
        job, payload = step
    else:
        job, payload = step, None
    if not (isinstance(job, (str, Job, JobFunction)) or (isinstance(job, type) and issubclass(job, Job))):
        raise WorkflowError(
            f"{where}: {job!r} is not a job (a Job class or instance, a @job function or a name)"
        )
    return job, payload


def _template(app: JobsApp, job: JobLike, where: str) -> Job:
    """A job instance to build messages from (as a dispatch does: classes and functions get registered)."""
    try:
        if isinstance(job, str):
            return app.registry.get(job)()
        app.registry.register(job)
        return job_instance(job)
    except JobNotRegistered as exc:
        raise WorkflowError(f"{where}: unknown job {job!r} ({exc})") from exc


def _message(app: JobsApp, step: Step, where: str, headers: dict[str, str]) -> Message:
    """The message of one step, with ``headers``; bad steps raise :class:`WorkflowError`."""
    job, payload = _split(step, where)
    return _template(app, job, where).to_message(payload, headers=headers)


def _messages(
    app: JobsApp, steps: Sequence[Step], what: str, headers: dict[str, str]
) -> list[Sequence[Message]]:
    """The messages of ``steps``, in order, in chunks: consecutive steps of one job are
    built together (the bulk path of ``dispatch_many``).
    """
    runs: list[tuple[Any, list[Any], int]] = []
    for index, step in enumerate(steps):
        job, payload = _split(step, f"{what} {index}")
        if runs and runs[-1][0] is job:
            runs[-1][1].append(payload)
        else:
            runs.append((job, [payload], index))
    return [
        _template(app, job, f"{what} {start}").to_messages(payloads, headers=headers)
        for job, payloads, start in runs
    ]


def _steps(steps: Sequence[Step], what: str) -> list[Step]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise WorkflowError(f"{what} takes a list of steps, got {type(steps).__name__}")
    if not steps:
        raise WorkflowError(f"{what} of zero jobs: give at least one step")
    return list(steps)


class Chain:
    """Jobs that run one after the other; built by ``Jobs.chain([...])``.

    Each link is enqueued once the previous one succeeded; a failed link
    stops the chain (the later links stay recorded) and retrying that link
    from the failed store (``Jobs.retry`` / ``jobs retry ID``) resumes it.
    """

    def __init__(self, app: JobsApp, steps: Sequence[Step]) -> None:
        self._app = app
        self._steps = _steps(steps, "a chain")

    def dispatch(self) -> str:
        """Store the chain and enqueue its first link; return the chain id.

        Every step is checked before anything is stored.
        """
        driver = self._app.driver
        driver.require(Capability.WORKFLOWS, "a chain")
        chain_id = new_id()
        links = [
            _message(
                self._app,
                step,
                f"chain step {index}",
                {ws.WORKFLOW_HEADER: chain_id, ws.STEP_HEADER: str(index), ws.WANTS_RESULT_HEADER: "1"},
            )
            for index, step in enumerate(self._steps)
        ]
        driver.validate(links)
        state = {"links": [m.encode().decode() for m in links], "position": 0}
        record = ws.new_record(ws.CHAIN, chain_id, len(links), state)
        with driver.workflow_transaction() as store:
            ws.create(store, record, links[:1])
        return chain_id


class Batch:
    """Jobs that run side by side, with callbacks; built by ``Jobs.batch([...])``.

    ``then`` runs once when every job succeeded, ``catch`` once at the first
    failure (at the end with :meth:`allow_failures`), ``finally_`` once when
    every job finished; each callback gets ``{"batch_id": ...}`` merged into
    its payload.
    """

    def __init__(self, app: JobsApp, steps: Sequence[Step]) -> None:
        self._app = app
        self._steps = _steps(steps, "a batch")
        self._callbacks: dict[str, Step] = {}
        self._allow_failures = False

    def then(self, job: JobLike, payload: Any = None) -> Batch:
        """Run ``job`` once when every job of the batch succeeded."""
        self._callbacks["then"] = (job, payload)
        return self

    def catch(self, job: JobLike, payload: Any = None) -> Batch:
        """Run ``job`` once at the first failure (at the end with :meth:`allow_failures`)."""
        self._callbacks["catch"] = (job, payload)
        return self

    def finally_(self, job: JobLike, payload: Any = None) -> Batch:
        """Run ``job`` once when every job finished, however."""
        self._callbacks["finally"] = (job, payload)
        return self

    def allow_failures(self, allow: bool = True) -> Batch:
        """Let the batch go on after a failure: ``catch`` runs at the end instead of at once."""
        self._allow_failures = bool(allow)
        return self

    def dispatch(self) -> str:
        """Store the batch and enqueue its jobs; return the batch id.

        Every step and callback is checked before anything is stored.
        """
        driver = self._app.driver
        driver.require(Capability.WORKFLOWS, "a batch")
        batch_id = new_id()
        chunks = _messages(self._app, self._steps, "batch step", {ws.WORKFLOW_HEADER: batch_id})
        callbacks: dict[str, str] = {}
        for name, (job, given) in self._callbacks.items():
            payload = {} if given is None else given
            if not isinstance(payload, dict):
                raise WorkflowError(
                    f"the {name} callback's payload must be a dict (the batch id is added to it), got "
                    f"{type(payload).__name__}"
                )
            payload = {**payload, "batch_id": batch_id}
            message = _message(self._app, (job, payload), f"the {name} callback", {})
            callbacks[name] = message.encode().decode()
        state = {"allow_failures": self._allow_failures, "callbacks": callbacks}
        record = ws.new_record(ws.BATCH, batch_id, sum(len(c) for c in chunks), state)
        # The jobs are checked as they are stored: one refused rolls the whole batch back.
        with driver.workflow_transaction() as store:
            ws.create(store, record, [])
            for chunk in chunks:
                store.enqueue(chunk)
        return batch_id


def add_to_batch(app: JobsApp, steps: Sequence[Step], batch_id: str | None = None) -> list[str]:
    """Add jobs to a running batch; return their ids.

    Inside one of the batch's jobs ``batch_id`` may be left out (the current
    job's batch). The batch's total grows in the same transaction that stores
    the jobs, so the batch cannot finish in between.
    """
    driver = app.driver
    driver.require(Capability.WORKFLOWS, "adding to a batch")
    if batch_id is None:
        try:
            batch_id = current_job().headers.get(ws.WORKFLOW_HEADER)
        except NoCurrentJob:
            batch_id = None
        if batch_id is None:
            raise WorkflowError("add_to_batch() without batch_id must be called inside a job of a batch")
    chunks = _messages(app, _steps(steps, "adding to a batch"), "step", {ws.WORKFLOW_HEADER: batch_id})
    messages = [m for chunk in chunks for m in chunk]
    with driver.workflow_transaction() as store:
        ws.add(store, batch_id, messages)
    return [m.id for m in messages]


def dispatch_after(app: JobsApp, message: Message, after: Sequence[str]) -> str:
    """Store ``message`` to be enqueued once the workflows ``after`` succeeded; return its id.

    ``after`` holds batch ids, chain ids and job ids: of jobs dispatched with
    ``after=``, and of plainly dispatched jobs, which are then watched until
    they finish (one that already succeeded, with its result still kept,
    counts at once; one that failed or was cancelled fails this job at once).
    If one of them fails, the job goes to the failed store with the reason,
    unrun.
    """
    driver = app.driver
    driver.require(Capability.WORKFLOWS, "a dispatch with after=")
    if isinstance(after, (str, bytes)) or not isinstance(after, Sequence):
        raise WorkflowError(f"after= takes a list of ids, got {type(after).__name__}")
    deps: list[str] = []
    for dep in after:
        if not isinstance(dep, str) or not dep:
            raise WorkflowError(f"after= takes batch, chain or job ids (strings), got {dep!r}")
        if dep == message.id:
            raise WorkflowError(f"job {message.id} cannot wait for itself (a dependency cycle)")
        if dep not in deps:
            deps.append(dep)
    message = message.replace(headers={**message.headers, ws.WORKFLOW_HEADER: message.id})
    driver.validate([message])
    state = {"message": message.encode().decode(), "after": deps}
    record = ws.new_record(ws.JOB, message.id, 1, state)
    with driver.workflow_transaction() as store:
        ws.create(store, record, [])
    return message.id


def status(app: JobsApp, workflow_id: str, kind: str) -> WorkflowStatus:
    """The status of the ``kind`` workflow ``workflow_id``; :class:`WorkflowNotFound` if none."""
    driver = app.driver
    driver.require(Capability.WORKFLOWS, f"{kind} status")
    record = driver.workflow(workflow_id)
    if record is None or record.kind != kind:
        raise WorkflowNotFound(f"no {kind} with id {workflow_id!r}")
    return WorkflowStatus.of(record)


def cancel_batch(app: JobsApp, batch_id: str) -> bool:
    """Cancel a batch; ``False`` if it had already finished or was cancelled."""
    driver = app.driver
    driver.require(Capability.WORKFLOWS, "cancelling a batch")
    with driver.workflow_transaction() as store:
        return ws.cancel(store, batch_id, ws.BATCH)


def cancel_chain(app: JobsApp, chain_id: str) -> bool:
    """Cancel a chain: no further link runs, a running one finishes; ``False`` if it had ended."""
    driver = app.driver
    driver.require(Capability.WORKFLOWS, "cancelling a chain")
    with driver.workflow_transaction() as store:
        return ws.cancel(store, chain_id, ws.CHAIN)


def listing(app: JobsApp, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkflowStatus]:
    """Statuses of the stored workflows of ``kind``, newest first."""
    driver = app.driver
    driver.require(Capability.WORKFLOWS, "listing workflows")
    return [WorkflowStatus.of(r) for r in driver.workflows(kind, limit, offset)]
