"""Job status on Redis: the records the status scripts keep, written and read in Python.

A finished job is kept under ``{prefix}:r:<id>`` as ``finished_at LF progress
LF meta`` (see :mod:`jobs_redis.status_scripts`): Lua only joins and stores
these strings, so a result's digits are never touched by Lua's JSON. This
module builds the ``meta`` part and turns a status script's reply into a
:class:`~jobs_core.status.JobStatus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobs_core import serializer
from jobs_core import workflow_state as ws
from jobs_core.errors import MalformedMessage
from jobs_core.message import Message
from jobs_core.status import (
    CANCELLED,
    DELAYED,
    FAILED,
    QUEUED,
    RUNNING,
    JobStatus,
    progress_from_json,
)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def meta(state: str, message: Message, result: str | None) -> str:
    """The ``meta`` part of a kept record: the state, where the job ran and its result's JSON text."""
    return serializer.dumps(
        {"s": state, "q": message.queue, "n": message.name, "a": message.attempts + 1, "r": result}
    )


def _decoded(body: bytes | None) -> Message | None:
    if body is None:
        return None
    try:
        return Message.decode(body)
    except MalformedMessage:
        return None


def _live(job_id: str, fields: Sequence[Any], now: float) -> JobStatus:
    state_field, queue, due, lease_end, body, worker, progress, cancel = fields
    message = _decoded(body)
    due_at = float(due) if due else None
    lease = float(lease_end) if lease_end else None
    if state_field == b"r" and lease is not None and lease > now:
        state = RUNNING
    elif state_field == b"r" or due_at is None or due_at <= now:
        state = QUEUED
    else:
        state = DELAYED
    return JobStatus(
        id=job_id,
        state=state,
        queue=_text(queue or b""),
        name="" if message is None else message.name,
        attempts=0 if message is None else message.attempts,
        available_at=due_at,
        lease_expires_at=lease if state == RUNNING else None,
        worker=_text(worker) if worker and state == RUNNING else None,
        progress=progress_from_json(progress),
        cancel_requested=cancel == b"1",
        payload=None if message is None else message.payload,
    )


def _kept(job_id: str, raw: bytes) -> JobStatus | None:
    finished, progress, rest = raw.split(b"\n", 2)
    if rest.startswith(b"~"):
        queue, _, body = rest[1:].partition(b"\n")
        message = _decoded(body)
        state, name, attempts, result = CANCELLED, "", 0, None
        if message is not None:
            name, attempts = message.name, message.attempts
    else:
        data = serializer.loads(rest)
        if not isinstance(data, dict):
            return None
        queue = str(data.get("q", "")).encode()
        state, name, attempts = str(data["s"]), str(data.get("n", "")), int(data.get("a", 0))
        text = data.get("r")
        result = serializer.loads(text) if isinstance(text, str) else None
    return JobStatus(
        id=job_id,
        state=state,
        queue=_text(queue),
        name=name,
        attempts=attempts,
        progress=progress_from_json(progress),
        result=result,
        finished_at=float(finished),
    )


def _failed(job_id: str, fields: Sequence[Any]) -> JobStatus:
    body, queue, error, failed_at, raw = fields
    message = None if raw == b"1" else _decoded(body)
    return JobStatus(
        id=job_id,
        state=FAILED,
        queue=_text(queue or b""),
        name="" if message is None else message.name,
        attempts=0 if message is None else message.attempts,
        error=_text(error or b""),
        finished_at=float(failed_at or 0),
        payload=None if message is None else message.payload,
    )


def parse_status(job_id: str, reply: Sequence[Any], now: float, results_ttl: float) -> JobStatus | None:
    """The status in the ``status`` script's ``reply``: the unfinished job, else the latest finished."""
    fields = list(reply) + [None] * (14 - len(reply))
    if fields[0]:
        return _live(job_id, fields[:8], now)
    finished: list[JobStatus] = []
    if fields[8]:
        kept = _kept(job_id, fields[8])
        if kept is not None and (kept.finished_at or 0.0) >= now - results_ttl:
            finished.append(kept)
    if fields[9] is not None:
        finished.append(_failed(job_id, fields[9:14]))
    if not finished:
        return None
    return max(finished, key=lambda status: status.finished_at or 0.0)


def ended_as(
    job_id: str, kept_raw: bytes | None, failed_at: bytes | None, now: float, results_ttl: float
) -> str | None:
    """How a job no longer stored ended, for a workflow watch.

    The latest of its kept record and its failed entry: ``succeeded``,
    ``cancelled`` or ``failed``; ``None`` if neither is there.
    """
    kept = _kept(job_id, kept_raw) if kept_raw else None
    if kept is not None and (kept.finished_at or 0.0) < now - results_ttl:
        kept = None
    if failed_at is not None and (kept is None or float(failed_at) >= (kept.finished_at or 0.0)):
        return ws.FAILED
    if kept is None:
        return None
    return ws.CANCELLED if kept.state == CANCELLED else ws.SUCCEEDED
