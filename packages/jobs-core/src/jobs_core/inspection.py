"""The status, result and cancel methods of an app and of the ``Jobs`` facade.

``status(job_id)`` tells where a job is (:class:`~jobs_core.status.JobStatus`),
``result(job_id, timeout)`` waits for a job to finish and returns its JSON
return value, and ``cancel(job_id)`` removes a waiting job or asks a running
job's worker to stop it. Each reads the driver's optional operations
(``Capability.STATUS`` and ``Capability.CANCEL``); a driver without them
raises :class:`~jobs_core.errors.UnsupportedOperation` naming the capability.
An id that no job has raises :class:`~jobs_core.errors.JobNotFound`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from jobs_core.driver import Capability
from jobs_core.errors import (
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultTimeout,
)
from jobs_core.status import (
    CANCEL_NOT_FOUND,
    CANCEL_REMOVED,
    CANCELLED,
    FAILED,
    FINISHED_STATES,
    RUNNING,
    STATES,
    SUCCEEDED,
    JobStatus,
)
from jobs_core.workflow_state import cancel_waiting_job, held_job_status

if TYPE_CHECKING:
    from jobs_core.driver import Driver
    from jobs_core.worker_records import WorkerRecord

#: First and longest pause, in seconds, between two looks of :meth:`AppInspection.result`.
RESULT_POLL = (0.02, 0.5)


def check_job_id(job_id: object) -> str:
    """``job_id`` if it is a non-empty str; :class:`ConfigurationError` naming it otherwise."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise ConfigurationError(f"a job id must be a non-empty str, got {job_id!r}")
    return job_id


class AppInspection:
    """Status, results and cancellation: the methods of :class:`~jobs_core.app.JobsApp`."""

    if TYPE_CHECKING:

        @property
        def driver(self) -> Driver:
            """The app's driver."""

    def status(self, job_id: str) -> JobStatus:
        """Where the job ``job_id`` is: queued, delayed, running, succeeded, failed or cancelled,
        or ``waiting`` for the jobs and workflows named by its ``after=``.

        Raises :class:`~jobs_core.errors.JobNotFound` for an id no job has (or
        a job finished longer ago than the driver keeps results, its
        ``results_ttl``), and :class:`~jobs_core.errors.UnsupportedOperation`
        if the driver lacks ``Capability.STATUS``.
        """
        check_job_id(job_id)
        driver = self.driver
        driver.require(Capability.STATUS, "job status")
        status = driver.job_status(job_id)
        if status is None and driver.supports(Capability.WORKFLOWS):
            # A job dispatched with after= is held in its workflow record until its
            # dependencies finished (or it was cancelled there): not stored as a job.
            with driver.workflow_transaction() as store:
                status = held_job_status(store, job_id)
        if status is None:
            detail = "" if driver.results_ttl > 0 else "this driver keeps no results: results_ttl is 0"
            raise JobNotFound(job_id, detail)
        return status

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job ``job_id`` to finish and return its return value (as JSON gives it back).

        Waits at most ``timeout`` seconds (``None``: as long as it takes), then
        raises :class:`~jobs_core.errors.ResultTimeout`. A job that failed
        raises :class:`~jobs_core.errors.JobFailed` (its ``error`` holds the
        traceback), a cancelled one :class:`~jobs_core.errors.JobCancelled`,
        an unknown id :class:`~jobs_core.errors.JobNotFound`.
        """
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = RESULT_POLL[0]
        while True:
            status = self.status(job_id)
            if status.finished:
                return _outcome(status)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeout(f"job {job_id!r} is still {status.state} after {timeout} s")
                time.sleep(min(pause, left))
            else:
                time.sleep(pause)
            pause = min(RESULT_POLL[1], pause * 2)

    def cancel(self, job_id: str) -> str:
        """Cancel the job ``job_id``; return what happened.

        ``"removed"``: it was waiting, and is gone (its status is ``cancelled``);
        ``"requested"``: it is running, and its worker was asked to stop it (it
        ends as ``cancelled`` within about a second, never retried);
        ``"finished"``: it had already finished, nothing changed. A job
        dispatched with ``after=`` that still waits for its dependencies is
        ``"removed"`` too: it ends ``cancelled``, unrun, and the jobs waiting
        for it fail with the reason. Raises
        :class:`~jobs_core.errors.JobNotFound` for an unknown id and
        :class:`~jobs_core.errors.UnsupportedOperation` if the driver lacks
        ``Capability.CANCEL``.
        """
        check_job_id(job_id)
        driver = self.driver
        driver.require(Capability.CANCEL, "cancelling jobs")
        outcome = driver.cancel(job_id)
        if outcome == CANCEL_NOT_FOUND:
            # A job dispatched with after= waits in its workflow record until its
            # dependencies finished: not stored as a job yet.
            if driver.supports(Capability.WORKFLOWS):
                with driver.workflow_transaction() as store:
                    if cancel_waiting_job(store, job_id):
                        return CANCEL_REMOVED
            raise JobNotFound(job_id)
        return outcome

    def jobs(
        self, state: str = RUNNING, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobStatus]:
        """The jobs in ``state``: ``limit`` of them, after skipping ``offset``.

        ``state`` is one of :data:`~jobs_core.status.STATES` — ``running``
        (soonest lease end first, with worker and progress), ``queued``
        (next to run first), ``delayed`` (soonest due first), ``succeeded``,
        ``failed``, ``cancelled`` (newest first) — or ``"finished"``: the last
        three together, newest first. ``queue`` keeps one queue's jobs.
        Finished jobs are those still kept (the driver's ``results_ttl``;
        failed ones until pruned). Raises
        :class:`~jobs_core.errors.ConfigurationError` for a bad argument and
        :class:`~jobs_core.errors.UnsupportedOperation` if the driver lacks
        ``Capability.JOB_LISTING``.
        """
        _check_listing(state, queue, limit, offset)
        driver = self.driver
        driver.require(Capability.JOB_LISTING, "listing jobs")
        if state != FINISHED_STATES:
            return driver.list_jobs(state, queue, limit, offset)
        merged = [
            status
            for finished in (SUCCEEDED, FAILED, CANCELLED)
            for status in driver.list_jobs(finished, queue, limit + offset, 0)
        ]
        merged.sort(key=lambda status: -(status.finished_at or 0.0))
        return merged[offset : offset + limit]

    def workers(self) -> list[WorkerRecord]:
        """The workers seen recently (their record renewed within ``WORKER_EXPIRY`` seconds).

        Each :class:`~jobs_core.worker_records.WorkerRecord` tells the worker's
        host, pid, queues, concurrency, start, last sign of life, and jobs
        processed and failed. Raises
        :class:`~jobs_core.errors.UnsupportedOperation` if the driver lacks
        ``Capability.WORKERS``.
        """
        driver = self.driver
        driver.require(Capability.WORKERS, "listing workers")
        return driver.workers()

    async def astatus(self, job_id: str) -> JobStatus:
        """:meth:`status` for ``async`` code: the event loop is not blocked."""
        return await asyncio.to_thread(self.status, job_id)

    async def aresult(self, job_id: str, timeout: float | None = None) -> Any:
        """:meth:`result` for ``async`` code: waits with ``asyncio.sleep``, not blocking the loop."""
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = RESULT_POLL[0]
        while True:
            status = await self.astatus(job_id)
            if status.finished:
                return _outcome(status)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeout(f"job {job_id!r} is still {status.state} after {timeout} s")
                await asyncio.sleep(min(pause, left))
            else:
                await asyncio.sleep(pause)
            pause = min(RESULT_POLL[1], pause * 2)

    async def acancel(self, job_id: str) -> str:
        """:meth:`cancel` for ``async`` code."""
        return await asyncio.to_thread(self.cancel, job_id)


def _check_listing(state: object, queue: object, limit: object, offset: object) -> None:
    """:class:`ConfigurationError` naming the first bad argument of :meth:`AppInspection.jobs`."""
    if state not in STATES and state != FINISHED_STATES:
        choices = ", ".join((*STATES, FINISHED_STATES))
        raise ConfigurationError(f"state must be one of {choices}; got {state!r}")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigurationError(f"queue must be a non-empty str or None, got {queue!r}")
    for what, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{what} must be an int >= 0, got {value!r}")


def _check_timeout(timeout: object) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ConfigurationError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")


def _outcome(status: JobStatus) -> Any:
    if status.state == SUCCEEDED:
        return status.result
    if status.state == FAILED:
        raise JobFailed(status.id, status.error or "")
    if status.state == CANCELLED:
        raise JobCancelled(f"job {status.id!r} was cancelled")
    raise AssertionError(f"not a finished state: {status.state}")  # pragma: no cover
