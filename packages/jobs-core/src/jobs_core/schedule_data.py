"""What a schedule is, as stored and as shown: names, the stored data, the view.

A schedule is stored as :class:`~jobs_core.message.ScheduleRecord` whose
``data`` (:class:`Definition`) holds the message to enqueue, so a scheduler
process fires it without importing the job's code; :class:`Schedule` is what
listing schedules shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs_core.errors import InvalidName, ScheduleError
from jobs_core.job import Job, JobFunction
from jobs_core.message import ScheduleRecord
from jobs_core.schedule import Missed, Spec, spec_from_dict

#: Version of the JSON a scheduler keeps in ``ScheduleRecord.data``.
DATA_VERSION = 1
#: Header naming the schedule that enqueued a message.
SCHEDULE_HEADER = "jobs.schedule"
#: Header holding the tick (Unix timestamp) that enqueued a message.
TICK_HEADER = "jobs.schedule_tick"

SCHEDULE_NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._:@/+=-]{0,199}\Z")
"""Schedule names: 1 to 200 characters of letters, digits and ``._:@/+=-``,
not starting with punctuation other than ``_``."""

JobTarget = type[Job] | Job | JobFunction | str
"""A job as schedules accept it: a class, a configured instance, a ``@job``
function, or a registered job name."""

#: Message fields a schedule does not keep in its template (each tick sets them).
TEMPLATE_SKIP = ("v", "id", "payload", "available_at", "created_at", "attempts", "last_error")


def validate_schedule_name(name: object) -> str:
    """Return ``name`` if it is a valid schedule name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not SCHEDULE_NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid schedule name {name!r}: use 1-200 characters of letters, digits or "
            "'._:@/+=-', starting with a letter, digit or '_'"
        )
    return name


def default_name(job_name: str, spec: Spec, payload: Any) -> str:
    """The name a schedule gets when none is given.

    Derived from the job name, the spec's identity and the payload, so that
    declaring the same schedule again (at every start-up) finds the stored
    one instead of adding another: ``myapp.jobs.report:cron:3f2a9c0d1e2b``.
    """
    digest = hashlib.sha256(
        json.dumps(
            {"job": job_name, "spec": spec.identity(), "payload": payload},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()[:12]
    prefix = re.sub(r"[^A-Za-z0-9._:@/+=-]", "_", job_name)[:160]
    if not prefix or not (prefix[0].isalnum() or prefix[0] == "_"):
        prefix = f"_{prefix}"[:160]
    return f"{prefix}:{spec.identity()['kind']}:{digest}"


@dataclass(frozen=True)
class Schedule:
    """A stored schedule, as :meth:`Scheduler.list` reports it.

    ``kind`` is ``at``, ``every``, ``daily`` or ``cron``; ``description`` says
    when it fires in words; ``last_run_at`` is the latest tick that was
    claimed (``None`` before the first); ``next_run_at`` is when a scheduler
    looks at it next (``None`` once a one-shot has fired, and while the
    schedule is paused: :meth:`Scheduler.resume` sets it from the next tick).
    """

    name: str
    job: str
    payload: Any
    queue: str
    kind: str
    description: str
    missed: Missed
    timezone: str | None
    next_run_at: float | None
    last_run_at: float | None
    paused: bool
    updated_at: float
    spec: Spec = field(repr=False, compare=False)

    @property
    def next_run(self) -> dt.datetime | None:
        """``next_run_at`` as an aware UTC datetime."""
        return _utc(self.next_run_at)

    @property
    def last_run(self) -> dt.datetime | None:
        """``last_run_at`` as an aware UTC datetime."""
        return _utc(self.last_run_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``jobs schedules --json`` prints)."""
        return {
            "name": self.name,
            "job": self.job,
            "payload": self.payload,
            "queue": self.queue,
            "kind": self.kind,
            "description": self.description,
            "missed": self.missed.value,
            "timezone": self.timezone,
            "next_run_at": self.next_run_at,
            "last_run_at": self.last_run_at,
            "paused": self.paused,
            "updated_at": self.updated_at,
        }


def _utc(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.timezone.utc)


def utc_text(value: float) -> str:
    """``value`` (a Unix time) as ``YYYY-MM-DD HH:MM:SS`` in UTC, for log lines."""
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{value:.3f}"


@dataclass(frozen=True)
class Definition:
    """The parsed ``data`` of a schedule record."""

    spec: Spec
    job: str
    payload: Any
    template: Mapping[str, Any]
    delay: float
    missed: Missed
    #: Whether a tick is dropped while the previous tick's job is unfinished (interval schedules).
    coalesce: bool = False

    def to_data(self, created_at: float) -> dict[str, Any]:
        """The JSON kept in the schedule record."""
        extra = {"coalesce": True} if self.coalesce else {}
        return {
            **extra,
            "v": DATA_VERSION,
            "spec": self.spec.to_dict(),
            "job": self.job,
            "payload": self.payload,
            "message": dict(self.template),
            "delay": self.delay,
            "missed": self.missed.value,
            "created_at": created_at,
        }

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> Definition:
        """Read a record's data; :class:`ScheduleError` names what cannot be read."""
        try:
            if data.get("v") != DATA_VERSION:
                raise ScheduleError(f"unsupported data version {data.get('v')!r}")
            template = data["message"]
            if not isinstance(template, Mapping) or not isinstance(data["job"], str):
                raise ScheduleError("message template is not an object")
            return cls(
                spec=spec_from_dict(data["spec"]),
                job=data["job"],
                payload=data.get("payload"),
                template=template,
                delay=float(data.get("delay") or 0.0),
                missed=Missed.parse(data.get("missed", Missed.ONCE.value)),
                coalesce=data.get("coalesce") is True,
            )
        except ScheduleError as exc:
            raise ScheduleError(
                f"schedule {name!r} is stored in a form this version cannot read: {exc}"
            ) from exc
        except Exception as exc:  # odd stored data (numbers out of range, deep nesting) stays with it
            raise ScheduleError(
                f"schedule {name!r} is stored in a form this version cannot read: {exc!r}"
            ) from exc


def stored_spec(record: ScheduleRecord | None) -> Spec | None:
    """The spec of a stored schedule, or ``None`` (none stored, or unreadable)."""
    if record is None:
        return None
    try:
        return Definition.from_data(record.name, record.data).spec
    except ScheduleError:
        return None


def schedule_view(record: ScheduleRecord) -> Schedule:
    """The :class:`Schedule` a stored record describes (:class:`ScheduleError` if unreadable)."""
    definition = Definition.from_data(record.name, record.data)
    spec = definition.spec
    return Schedule(
        name=record.name,
        job=definition.job,
        payload=definition.payload,
        queue=str(definition.template.get("queue", "default")),
        kind=str(spec.identity()["kind"]),
        description=spec.describe(),
        missed=definition.missed,
        timezone=spec.timezone,
        next_run_at=None if record.paused else record.next_run_at,
        last_run_at=record.last_tick,
        paused=record.paused,
        updated_at=record.updated_at,
        spec=spec,
    )
