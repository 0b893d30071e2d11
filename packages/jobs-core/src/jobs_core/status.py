"""Where a job is: :class:`JobStatus`, its :class:`Progress`, and the states.

``Jobs.status(job_id)`` answers with a :class:`JobStatus` read from the
driver (``Capability.STATUS``): waiting, running with its worker and lease
end, or finished with its return value or error. Finished jobs are kept for
the driver's ``results_ttl`` seconds (a day unless configured; ``0`` keeps
none), then pruned. A job reports progress with ``self.progress(done, total,
note)`` (``Capability.PROGRESS``) and is cancelled with ``Jobs.cancel(job_id)``
(``Capability.CANCEL``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from jobs_core.errors import ConfigurationError, MalformedMessage
from jobs_core.message import Message

#: Waiting and due.
QUEUED = "queued"
#: Waiting, due later (a delay or a retry's backoff).
DELAYED = "delayed"
#: Leased to a worker.
RUNNING = "running"
#: Finished: ``handle`` returned; ``result`` holds its JSON return value.
SUCCEEDED = "succeeded"
#: In the failed store; ``error`` holds the error.
FAILED = "failed"
#: Cancelled with ``Jobs.cancel`` before or while it ran.
CANCELLED = "cancelled"
#: Dispatched with ``after=``, waiting for the jobs or workflows it depends on:
#: held in its workflow record, not stored as a job yet (so not listed by
#: ``Jobs.jobs``; ``Jobs.status`` tells it).
WAITING = "waiting"

#: Every state, in the order a job passes through them.
STATES = (QUEUED, DELAYED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: The states a job does not leave.
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
#: What ``Jobs.jobs`` takes for "every finished state", newest first.
FINISHED_STATES = "finished"

#: Seconds a driver keeps finished jobs' status and results unless configured.
DEFAULT_RESULTS_TTL = 86_400.0

#: What :meth:`~jobs_core.driver.Driver.cancel` answers: a waiting job was removed.
CANCEL_REMOVED = "removed"
#: A running job's worker was asked to stop it.
CANCEL_REQUESTED = "requested"
#: The job had already finished: nothing changed.
CANCEL_FINISHED = "finished"
#: No job has that id.
CANCEL_NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Progress:
    """What a running job last reported: ``done`` of ``total`` (``None``: unknown), and a note."""

    done: float
    total: float | None = None
    note: str = ""
    updated_at: float = 0.0

    @property
    def fraction(self) -> float | None:
        """``done / total`` between 0 and 1, or ``None`` without a positive total."""
        if not self.total or self.total <= 0:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"done": self.done, "total": self.total, "note": self.note, "updated_at": self.updated_at}

    @classmethod
    def from_dict(cls, data: Any) -> Progress | None:
        """The progress in ``data`` (as :meth:`to_dict` wrote it), or ``None`` if it holds none."""
        if not isinstance(data, dict) or not isinstance(data.get("done"), (int, float)):
            return None
        total = data.get("total")
        return cls(
            done=float(data["done"]),
            total=float(total) if isinstance(total, (int, float)) else None,
            note=str(data.get("note") or ""),
            updated_at=float(data.get("updated_at") or 0.0),
        )


def progress_json(progress: Progress | None) -> str | None:
    """``progress`` as the JSON text drivers store (``None`` for none)."""
    return None if progress is None else json.dumps(progress.to_dict())


def progress_from_json(text: str | bytes | None) -> Progress | None:
    """The progress stored as :func:`progress_json` wrote it; ``None`` for none or unreadable text."""
    if not text:
        return None
    try:
        return Progress.from_dict(json.loads(text))
    except ValueError:
        return None


def check_progress(done: object, total: object, note: object, updated_at: float = 0.0) -> Progress:
    """A :class:`Progress` from a job's arguments; :class:`ConfigurationError` naming a bad one."""
    if isinstance(done, bool) or not isinstance(done, (int, float)) or not math.isfinite(done):
        raise ConfigurationError(f"progress done must be a finite number, got {done!r}")
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, (int, float)) or not math.isfinite(total)
    ):
        raise ConfigurationError(f"progress total must be a finite number or None, got {total!r}")
    if not isinstance(note, str):
        raise ConfigurationError(f"progress note must be a str, got {type(note).__name__}")
    return Progress(float(done), None if total is None else float(total), note[:1000], updated_at)


@dataclass(frozen=True)
class JobStatus:
    """Where one job is.

    ``state`` is one of :data:`STATES`, or :data:`WAITING` for a job still
    waiting for its dependencies. ``result`` is the JSON return value of
    a succeeded job (``None`` for a value JSON cannot hold); ``error`` the
    error of a failed one. ``worker`` and ``lease_expires_at`` describe a
    running job (``worker`` once it reported progress or ran for about a
    second); ``progress`` what it last reported. ``cancel_requested`` is true
    once ``Jobs.cancel`` asked its worker to stop it. ``payload`` is the
    job's JSON payload as it was dispatched, while the driver holds its
    message: queued, delayed, running and failed jobs (the failed store keeps
    the message); ``None`` once it succeeded or was cancelled (a kept result
    holds only the return value) or when the stored message cannot be decoded.
    """

    id: str
    state: str
    queue: str = ""
    name: str = ""
    attempts: int = 0
    available_at: float | None = None
    lease_expires_at: float | None = None
    worker: str | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    result: Any = None
    error: str | None = None
    finished_at: float | None = None
    payload: Any = None

    @property
    def finished(self) -> bool:
        """Whether the job will not change state again."""
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``jobs status --json``)."""
        return {
            "id": self.id,
            "state": self.state,
            "queue": self.queue,
            "name": self.name,
            "attempts": self.attempts,
            "available_at": self.available_at,
            "lease_expires_at": self.lease_expires_at,
            "worker": self.worker,
            "progress": None if self.progress is None else self.progress.to_dict(),
            "cancel_requested": self.cancel_requested,
            "result": self.result,
            "error": self.error,
            "finished_at": self.finished_at,
            "payload": self.payload,
        }


def results_ttl(value: object, what: str = "results_ttl") -> float:
    """Check a ``results_ttl`` setting (seconds, ``>= 0``; text from a URL is accepted)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(f"{what} must be a number of seconds >= 0, got {value!r}") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def live_state(reserved: bool, lease_expires_at: float | None, available_at: float, now: float) -> str:
    """The state of a job a driver still holds in its queue, from its stored record.

    :data:`RUNNING` while a lease holds it; :data:`QUEUED` when it is due or
    its lease has ended (it is about to be reserved again); :data:`DELAYED`
    when it is due later. ``now`` is :func:`time.time`.
    """
    if reserved and (lease_expires_at or 0.0) > now:
        return RUNNING
    if reserved or available_at <= now:
        return QUEUED
    return DELAYED


def live_status(
    job_id: str,
    queue: str,
    body: bytes | None,
    *,
    reserved: bool,
    available_at: float,
    lease_expires_at: float | None,
    now: float,
    worker: str | None = None,
    progress: Progress | None = None,
    cancel_requested: bool = False,
) -> JobStatus:
    """The :class:`JobStatus` of a job still in its queue (see :func:`live_state`), for a driver.

    ``body`` is the stored message (its name and attempts are read from it; a
    malformed one leaves them empty); ``worker`` and ``lease_expires_at`` are
    reported only while it runs.
    """
    try:
        message: Message | None = Message.decode(bytes(body or b""))
    except MalformedMessage:
        message = None
    state = live_state(reserved, lease_expires_at, available_at, now)
    running = state == RUNNING
    return JobStatus(
        id=job_id,
        state=state,
        queue=queue,
        name="" if message is None else message.name,
        attempts=0 if message is None else message.attempts,
        available_at=available_at,
        lease_expires_at=lease_expires_at if running else None,
        worker=worker if running else None,
        progress=progress,
        cancel_requested=cancel_requested,
        payload=None if message is None else message.payload,
    )
