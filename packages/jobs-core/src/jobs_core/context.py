"""The job being run: its id and attempt, for the code that runs it.

A worker marks the job it runs, so that the job — and anything it calls —
can learn which job and which attempt this is, with :func:`current_job`
(``@job`` functions and helpers) or ``self.job_id`` and ``self.attempt``
(Job classes)::

    from jobs_core import Job, current_job

    class SendReceipt(Job):
        def handle(self, payload):
            mailer.send(payload["to"], idempotency_key=self.job_id)

    @job(queue="emails")
    def send_receipt(payload):
        mailer.send(payload["to"], idempotency_key=current_job().id)

With at-least-once delivery a job may run again after it did its work (its
worker died before acknowledging it); the id stays the same across every
delivery and retry of one dispatch, so it is the key to pass to a service
that drops a request it has seen. The mark is a context variable: it follows
the job into ``async`` code and a forked child (a sync job with a timeout),
but not into threads the job starts itself; ``self.job_id`` works there too.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass
from math import isfinite
from typing import TYPE_CHECKING, Any

from jobs_core.errors import NoCurrentJob

if TYPE_CHECKING:
    from jobs_core.message import Message


@dataclass(frozen=True)
class JobContext:
    """The job being run.

    ``id`` is the job's id, the same across its retries and redeliveries (what
    dispatch returned); ``attempt`` is 1 on the first run, 2 on the first
    retry, and so on; ``max_retries`` is how many retries follow a failure.
    """

    id: str
    name: str
    queue: str
    attempt: int
    max_retries: int
    headers: Mapping[str, str]

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now sends the job to the failed store instead of a retry."""
        return self.attempt > self.max_retries

    @classmethod
    def of(cls, message: Message) -> JobContext:
        """The context of a run of ``message``."""
        return cls(
            id=message.id,
            name=message.name,
            queue=message.queue,
            attempt=message.attempts + 1,
            max_retries=message.max_retries,
            headers=dict(message.headers),
        )


_CURRENT: contextvars.ContextVar[Message | None] = contextvars.ContextVar("jobs_current_job", default=None)

#: The attribute of a job instance that holds the message it runs.
_MESSAGE_ATTRIBUTE = "_jobs_message"


def current_job() -> JobContext:
    """The job the calling code runs in (id, name, queue, attempt).

    Raises :class:`~jobs_core.errors.NoCurrentJob` outside a job run by a
    worker (``Jobs.work``, ``jobs worker``), for instance when a ``@job``
    function is called directly.
    """
    message = _CURRENT.get()
    if message is None:
        raise NoCurrentJob("current_job() is only known inside a job run by a worker")
    return JobContext.of(message)


def job_context(job: object) -> JobContext:
    """The run ``job`` (an instance) belongs to; :class:`NoCurrentJob` if it is not being run."""
    message: Message | None = getattr(job, _MESSAGE_ATTRIBUTE, None)
    if message is None:
        message = _CURRENT.get()
    if message is None:
        raise NoCurrentJob(
            f"{type(job).__qualname__}.job_id and .attempt are only known while a worker runs the job"
        )
    return JobContext.of(message)


def enter_job(job: object, message: Message) -> contextvars.Token[Message | None]:
    """Mark ``job`` as running ``message`` in this context (the worker calls this).

    Returns the token for :func:`leave_job`. In a task of its own (an
    ``async`` job on the event loop) there is nothing to undo.
    """
    setattr(job, _MESSAGE_ATTRIBUTE, message)
    return _CURRENT.set(message)


def leave_job(token: contextvars.Token[Message | None]) -> None:
    """Undo :func:`enter_job` once the job's run is over."""
    _CURRENT.reset(token)


_NUMBERS = (int, float)

#: The worker's tracker of the job run in this context (set by the worker with the job).
CURRENT_TRACKER: contextvars.ContextVar[Any] = contextvars.ContextVar("jobs_current_tracker", default=None)


def _run_of(job: object | None) -> tuple[Message | None, Any]:
    if job is not None:
        tracker = getattr(job, "_jobs_tracker", None)
        message: Message | None = getattr(job, _MESSAGE_ATTRIBUTE, None)
        if tracker is not None and message is not None:
            return message, tracker
    return _CURRENT.get(), CURRENT_TRACKER.get()


def report_progress(
    done: float, total: float | None = None, note: str = "", *, job: object | None = None
) -> None:
    """Report the progress of the job run in this context (``@job`` functions; classes use ``self.progress``).

    ``done`` of ``total`` (``None``: unknown) and a short note, shown by
    ``Jobs.status`` while the job runs; see :meth:`jobs_core.Job.progress`.
    Does nothing outside a job run by a worker.
    """
    if not (
        type(done) in _NUMBERS
        and (total is None or type(total) in _NUMBERS)
        and type(note) is str
        and isfinite(done)
        and (total is None or isfinite(total))
    ):
        from jobs_core.status import check_progress

        check_progress(done, total, note)  # raises naming the bad value
        done, total = float(done), None if total is None else float(total)
    message, tracker = _run_of(job)
    if message is not None and tracker is not None:
        tracker.report(message.id, (done, total, note, time.time()))


def is_cancelled(job: object | None = None) -> bool:
    """Whether the job run in this context (or ``job``) was cancelled with ``Jobs.cancel``."""
    message, tracker = _run_of(job)
    return message is not None and tracker is not None and bool(tracker.is_cancelled(message.id))
