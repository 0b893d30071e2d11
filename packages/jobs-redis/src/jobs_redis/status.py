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
from jobs_core.status import CANCELLED, FAILED, JobStatus, live_status, progress_from_json


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


def live_record(job_id: str, fields: Sequence[Any], now: float) -> JobStatus:
    """The status of a stored job from its record's fields ``s q a e b w g x`` (as the scripts read them)."""
    state_field, queue, due, lease_end, body, worker, progress, cancel = fields
    return live_status(
        job_id,
        _text(queue or b""),
        body,
        reserved=state_field == b"r",
        available_at=float(due) if due else 0.0,
        lease_expires_at=float(lease_end) if lease_end else None,
        now=now,
        worker=_text(worker) if worker else None,
        progress=progress_from_json(progress),
        cancel_requested=cancel == b"1",
    )


def kept_status(job_id: str, raw: bytes) -> JobStatus | None:
    """The status of a finished job from its kept ``{prefix}:r:<id>`` record; ``None`` if unreadable."""
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


def failed_status(job_id: str, fields: Sequence[Any]) -> JobStatus:
    """The status of a job in the failed store, from its entry's fields ``b q e t x``."""
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
        return live_record(job_id, fields[:8], now)
    finished: list[JobStatus] = []
    if fields[8]:
        kept = kept_status(job_id, fields[8])
        if kept is not None and (kept.finished_at or 0.0) >= now - results_ttl:
            finished.append(kept)
    if fields[9] is not None:
        finished.append(failed_status(job_id, fields[9:14]))
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
    kept = kept_status(job_id, kept_raw) if kept_raw else None
    if kept is not None and (kept.finished_at or 0.0) < now - results_ttl:
        kept = None
    if failed_at is not None and (kept is None or float(failed_at) >= (kept.finished_at or 0.0)):
        return ws.FAILED
    if kept is None:
        return None
    return ws.CANCELLED if kept.state == CANCELLED else ws.SUCCEEDED
