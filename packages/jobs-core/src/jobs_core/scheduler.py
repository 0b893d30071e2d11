"""The scheduler: delayed, recurring and cron schedules that persist in the driver.

A :class:`Scheduler` declares schedules (``schedule_at``, ``schedule_in``,
``schedule_every``, ``schedule_daily``, ``schedule_cron``), stores them with
the driver's schedule operations, and fires them in :meth:`Scheduler.tick`.
Any number of schedulers may run against one backend: each tick of a schedule
is claimed through :meth:`Driver.claim_tick <jobs_core.driver.Driver.claim_tick>`
and only the scheduler whose claim succeeds enqueues the job.

Guarantee: each tick is enqueued at most once, by whichever scheduler claims
it. The claimer retries transient backend errors while enqueueing, and keeps
a tick that still could not be stored to try again at each following tick
(an outage longer than a moment); a scheduler process that dies holding such
a tick, or killed between its claim and its enqueue (one backend round trip),
loses it. Where the driver declares ``UNIQUE``, a scheduled
message carries the unique key ``schedule:<name>@<tick>`` (unless the job has
its own), so an enqueue retried after an ambiguous failure is not stored twice.

Schedules are stored as JSON that holds the message to enqueue (job name,
payload, queue and every per-dispatch setting of the job), so a scheduler
process fires them without importing the job's code.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError, InvalidName, JobsError, ScheduleError, ScheduleNotFound
from jobs_core.job import Job, JobFunction, job_instance
from jobs_core.message import Message, ScheduleRecord, new_id, validate_queue_name
from jobs_core.registry import Registry
from jobs_core.schedule import (
    At,
    Cron,
    Every,
    Missed,
    Spec,
    interval_seconds,
    spec_from_dict,
    timestamp,
)
from jobs_core.serializer import check_json

if TYPE_CHECKING:
    from jobs_core.queue import Queue

log = logging.getLogger("jobs_core.scheduler")

#: Version of the JSON a scheduler keeps in ``ScheduleRecord.data``.
DATA_VERSION = 1
#: Header naming the schedule that enqueued a message.
SCHEDULE_HEADER = "jobs.schedule"
#: Header holding the tick (Unix timestamp) that enqueued a message.
TICK_HEADER = "jobs.schedule_tick"

SCHEDULE_NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._:@/+=-]{0,199}\Z")
"""Schedule names: 1 to 200 characters of letters, digits and ``._:@/+=-``,
not starting with punctuation other than ``_``."""

Enqueue = Callable[[list[Message]], object]
"""What a scheduler calls to store the messages of a tick (``Queue.enqueue``,
``Driver.enqueue``): returns a list of ids, ``None`` for a dropped duplicate."""

JobTarget = type[Job] | Job | JobFunction | str
"""A job as schedules accept it: a class, a configured instance, a ``@job``
function, or a registered job name."""

_TEMPLATE_SKIP = ("v", "id", "payload", "available_at", "created_at", "attempts", "last_error")


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


def _utc_text(value: float) -> str:
    """``value`` (a Unix time) as ``YYYY-MM-DD HH:MM:SS`` in UTC, for log lines."""
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{value:.3f}"


@dataclass(frozen=True)
class _Definition:
    """The parsed ``data`` of a schedule record."""

    spec: Spec
    job: str
    payload: Any
    template: Mapping[str, Any]
    delay: float
    missed: Missed

    def to_data(self, created_at: float) -> dict[str, Any]:
        return {
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
    def from_data(cls, name: str, data: Mapping[str, Any]) -> _Definition:
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
            )
        except ScheduleError as exc:
            raise ScheduleError(
                f"schedule {name!r} is stored in a form this version cannot read: {exc}"
            ) from exc
        except Exception as exc:  # odd stored data (numbers out of range, deep nesting) stays with it
            raise ScheduleError(
                f"schedule {name!r} is stored in a form this version cannot read: {exc!r}"
            ) from exc


class Scheduler:
    """Declares, stores and fires schedules on one driver.

    :param driver: a driver declaring ``Capability.SCHEDULES``.
    :param enqueue: stores the messages of a tick; defaults to
        ``driver.enqueue``. An app passes its own dispatch path so that
        ``job.queued`` events fire.
    :param registry: resolves job names given as strings to their classes
        (for their defaults); unregistered names get the message defaults.
    :param clock: the current Unix time (``time.time``).
    :param timezone: time zone of daily and cron schedules declared without
        one (``"UTC"``).
    :param grace: seconds a tick may be late and still run under the
        ``skip`` policy.
    :param max_catch_up: most missed ticks run at once under the ``all`` policy.
    :param enqueue_attempts: tries for enqueueing a claimed tick when the
        backend reports a retryable error, before it is held in
        :attr:`pending` and tried again at each following tick.
    :param max_pending: most held ticks; beyond it the oldest are dropped
        with an error.
    """

    def __init__(
        self,
        driver: Driver,
        enqueue: Enqueue | None = None,
        *,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        timezone: str | dt.tzinfo | None = None,
        grace: float = 60.0,
        max_catch_up: int = 100,
        enqueue_attempts: int = 3,
        max_pending: int = 10_000,
    ) -> None:
        if grace < 0:
            raise ConfigurationError(f"grace must be >= 0 seconds, got {grace!r}")
        if max_catch_up < 1 or enqueue_attempts < 1 or max_pending < 1:
            raise ConfigurationError("max_catch_up, enqueue_attempts and max_pending must be >= 1")
        self.driver = driver
        self.enqueue: Enqueue = enqueue if enqueue is not None else driver.enqueue
        self.registry = registry
        self.clock = clock
        self.timezone = timezone
        self.grace = float(grace)
        self.max_catch_up = max_catch_up
        self.enqueue_attempts = enqueue_attempts
        self._next_due: float | None = None
        self._lock = threading.Lock()
        #: Claimed ticks whose message the backend refused with a retryable
        #: error: ``(schedule name, tick, message)``, retried at every tick.
        self.pending: builtins.list[tuple[str, float, Message]] = []
        self.max_pending = max_pending

    # -- declaring schedules ------------------------------------------------

    def schedule_at(
        self,
        job: JobTarget,
        when: dt.datetime | float,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Run ``job`` once at ``when`` (an aware datetime or a Unix timestamp).

        A time in the past runs at the next tick. The schedule is removed once
        it has fired. Returns the schedule's name.
        """
        return self._declare(job, At(timestamp(when)), payload, name=name, queue=queue, missed=Missed.ONCE)

    def schedule_in(
        self,
        job: JobTarget,
        delay: float | dt.timedelta,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Run ``job`` once, ``delay`` seconds (or a timedelta) from now. Returns the name."""
        seconds = interval_seconds(delay, "delay")
        if seconds < 0:
            raise ScheduleError(f"delay must be >= 0 seconds, got {delay!r}")
        return self.schedule_at(job, self.clock() + seconds, payload, name=name, queue=queue)

    def schedule_every(
        self,
        job: JobTarget,
        interval: float | dt.timedelta,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` every ``interval`` seconds (or a timedelta), first one
        interval from now. Returns the name.
        """
        seconds = interval_seconds(interval)
        return self._declare(
            job, Every(seconds, self.clock()), payload, name=name, queue=queue, missed=Missed.parse(missed)
        )

    def schedule_daily(
        self,
        job: JobTarget,
        payload: Any = None,
        queue: str | None = None,
        time: str | dt.time = "00:00",
        *,
        timezone: str | dt.tzinfo | None = None,
        name: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` every day at ``time`` (``"HH:MM"``) in ``timezone``. Returns the name.

        On the day clocks go forward past ``time`` it runs at the change; on
        the day they go back it runs at the first of the two.
        """
        spec = Cron.daily_at(time, self._zone(timezone))
        return self._declare(job, spec, payload, name=name, queue=queue, missed=Missed.parse(missed))

    def schedule_cron(
        self,
        job: JobTarget,
        expression: str,
        payload: Any = None,
        *,
        timezone: str | dt.tzinfo | None = None,
        name: str | None = None,
        queue: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` on a five-field cron expression in ``timezone``. Returns the name.

        Daylight-saving changes follow :mod:`jobs_core.cron`.
        """
        spec = Cron(expression, self._zone(timezone))
        return self._declare(job, spec, payload, name=name, queue=queue, missed=Missed.parse(missed))

    def _zone(self, timezone: str | dt.tzinfo | None) -> str | dt.tzinfo | None:
        return timezone if timezone is not None else self.timezone

    def _declare(
        self,
        job: JobTarget,
        spec: Spec,
        payload: Any,
        *,
        name: str | None,
        queue: str | None,
        missed: Missed,
    ) -> str:
        now = self.clock()
        message = self._message_for(job, payload, queue, now)
        delay = message.available_at - message.created_at
        self.driver.validate([message.replace(available_at=time.time() + delay)])
        name = validate_schedule_name(name) if name is not None else default_name(message.name, spec, payload)
        existing = self._find(name)
        old_spec = _stored_spec(existing)
        same = old_spec is not None and old_spec.identity() == spec.identity()
        if same and isinstance(old_spec, Every):
            spec = old_spec  # keep the rhythm of a re-declared interval
        if same and existing is not None and existing.next_run_at is not None:
            next_run_at: float | None = existing.next_run_at
        elif isinstance(spec, At):
            next_run_at = spec.at
        else:
            next_run_at = spec.next_after(now)
        template = {k: v for k, v in message.to_dict().items() if k not in _TEMPLATE_SKIP}
        definition = _Definition(
            spec=spec,
            job=message.name,
            payload=payload,
            template=template,
            delay=delay,
            missed=missed,
        )
        created_at = existing.data.get("created_at", now) if existing is not None else now
        self.driver.save_schedule(
            ScheduleRecord(
                name=name,
                data=definition.to_data(created_at),
                next_run_at=next_run_at,
                paused=existing.paused if existing is not None else False,
                last_tick=None,
                updated_at=now,
            )
        )
        log.debug("schedule %r declared: %s", name, spec.describe())
        return name

    def _message_for(self, job: JobTarget, payload: Any, queue: str | None, now: float) -> Message:
        if isinstance(job, str):
            if not job:
                raise ConfigurationError("job name must be a non-empty string")
            if self.registry is None or job not in self.registry:
                check_json(payload)
                return Message(
                    name=job,
                    payload=payload,
                    queue=validate_queue_name(queue if queue is not None else "default"),
                    available_at=now,
                    created_at=now,
                )
            instance: Job = self.registry.get(job)()
        else:
            instance = job_instance(job)
        return instance.to_message(payload, queue=queue, now=now)

    # -- managing schedules -------------------------------------------------

    def get(self, name: str) -> Schedule:
        """The schedule called ``name``; :class:`ScheduleNotFound` if there is none."""
        return _schedule(self._get(name))

    def pause(self, name: str) -> None:
        """Stop firing ``name`` until :meth:`resume`. Raises :class:`ScheduleNotFound`."""
        record = self._get(name)
        if not record.paused:
            self.driver.save_schedule(replace(record, paused=True, last_tick=None, updated_at=self.clock()))

    def resume(self, name: str) -> None:
        """Fire ``name`` again from its next tick; ticks that passed while it
        was paused are not caught up (a one-shot that came due runs now).
        Raises :class:`ScheduleNotFound`.
        """
        record = self._get(name)
        spec = _Definition.from_data(name, record.data).spec
        now = self.clock()
        next_run_at = spec.at if isinstance(spec, At) else spec.next_after(now)
        self.driver.save_schedule(
            replace(record, paused=False, next_run_at=next_run_at, last_tick=None, updated_at=now)
        )

    def remove(self, name: str) -> bool:
        """Delete ``name``; ``False`` if there was no such schedule."""
        return self.driver.remove_schedule(name)

    def _find(self, name: str) -> ScheduleRecord | None:
        for record in self.driver.schedules():
            if record.name == name:
                return record
        return None

    def _get(self, name: str) -> ScheduleRecord:
        record = self._find(name)
        if record is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return record

    # -- firing -------------------------------------------------------------

    def tick(self, now: float | None = None) -> int:
        """Fire every due schedule once; return how many jobs were enqueued.

        For each schedule whose ``next_run_at`` has come, the due ticks are
        chosen by its missed-tick policy, each is claimed through the driver
        and enqueued only if the claim succeeded, and ``next_run_at`` moves to
        the first tick after ``now``. A schedule whose stored data cannot be
        read is logged and left alone; backend errors propagate.
        """
        now = self.clock() if now is None else now
        enqueued = self._retry_pending() if self.pending else 0
        next_due: float | None = None
        for record in self.driver.schedules():
            if record.paused or record.next_run_at is None:
                continue
            upcoming: float | None = record.next_run_at
            if record.next_run_at <= now:
                try:
                    definition = _Definition.from_data(record.name, record.data)
                except ScheduleError as exc:
                    log.error("%s; it is skipped", exc)
                    continue
                count, upcoming = self._fire(record, definition, now)
                enqueued += count
            if upcoming is not None and (next_due is None or upcoming < next_due):
                next_due = upcoming
        self._next_due = next_due
        return enqueued

    def _fire(self, record: ScheduleRecord, definition: _Definition, now: float) -> tuple[int, float | None]:
        assert record.next_run_at is not None
        spec = definition.spec
        policy = definition.missed
        limit = self.max_catch_up if policy is Missed.ALL else 1
        ticks, total = spec.due(record.next_run_at, now, limit)
        if not isinstance(spec, At):
            if policy is Missed.SKIP:
                ticks = [t for t in ticks[-1:] if now - t <= self.grace]
            if total > len(ticks):
                log.info(
                    "schedule %r: %d missed tick(s) not run (policy %r)",
                    record.name,
                    total - len(ticks),
                    policy.value,
                )
        enqueued = 0
        for tick in ticks:
            if self.driver.claim_tick(record.name, tick) and self._enqueue(
                record.name, definition, tick, now
            ):
                enqueued += 1
        if isinstance(spec, At):
            if ticks:
                self.driver.remove_schedule(record.name)
            return enqueued, None if ticks else spec.at
        next_run_at = spec.next_after(now)
        if next_run_at != record.next_run_at:
            self.driver.advance_schedule(record.name, record.next_run_at, next_run_at)
        return enqueued, next_run_at

    def _enqueue(self, name: str, definition: _Definition, tick: float, now: float) -> bool:
        message = self._tick_message(name, definition, tick, now)
        for attempt in range(1, self.enqueue_attempts + 1):
            outcome = self._store(name, tick, message, final=attempt == self.enqueue_attempts)
            if outcome is not None:
                return outcome
            time.sleep(0.2 * 2 ** (attempt - 1))
        return False

    def _store(self, name: str, tick: float, message: Message, final: bool) -> bool | None:
        """Enqueue one tick's message: ``True`` stored, ``False`` not stored
        (dropped or failed for good), ``None`` worth trying again now. After a
        ``final`` retryable failure the message waits in :attr:`pending`.
        """
        try:
            result = self.enqueue([message])
        except JobsError as exc:
            if exc.retryable and not final:
                log.warning("schedule %r: enqueue failed (%s); retrying", name, exc)
                return None
            if exc.retryable:
                self._hold(name, tick, message)
                log.warning(
                    "schedule %r: tick %.3f not enqueued yet (%s); retrying next tick", name, tick, exc
                )
                return False
            log.error("schedule %r: tick %.3f was claimed but its job was not enqueued: %s", name, tick, exc)
            return False
        except Exception:
            log.exception("schedule %r: tick %.3f was claimed but its job was not enqueued", name, tick)
            return False
        if isinstance(result, Sequence) and result and result[0] is None:
            log.info(
                "schedule %r: tick %.3f dropped, its unique key is held by an unfinished job", name, tick
            )
            return False
        log.info(
            "schedule %r: fired for %s UTC: job %s %s on queue %r",
            name,
            _utc_text(tick),
            message.name,
            message.id,
            message.queue,
        )
        return True

    def _hold(self, name: str, tick: float, message: Message) -> None:
        with self._lock:
            self.pending.append((name, tick, message))
            while len(self.pending) > self.max_pending:
                lost = self.pending.pop(0)
                log.error("schedule %r: tick %.3f was claimed but never enqueued (backlog full)", *lost[:2])

    def _retry_pending(self) -> int:
        """Try the held messages again, oldest first; stop at the first retryable failure."""
        with self._lock:
            held, self.pending = self.pending, []
        stored = 0
        for index, (name, tick, message) in enumerate(held):
            try:
                result = self.enqueue([message])
            except JobsError as exc:
                if exc.retryable:
                    with self._lock:
                        self.pending[:0] = held[index:]
                    return stored
                log.error(
                    "schedule %r: tick %.3f was claimed but its job was not enqueued: %s", name, tick, exc
                )
                continue
            except Exception:
                log.exception("schedule %r: tick %.3f was claimed but its job was not enqueued", name, tick)
                continue
            if not (isinstance(result, Sequence) and result and result[0] is None):
                stored += 1
                log.info("schedule %r: tick %.3f enqueued after a backend failure", name, tick)
        return stored

    def _tick_message(self, name: str, definition: _Definition, tick: float, now: float) -> Message:
        data = dict(definition.template)
        headers = dict(data.get("headers") or {})
        headers[SCHEDULE_HEADER] = name
        headers[TICK_HEADER] = f"{tick:.6f}"
        data.update(
            id=new_id(),
            payload=definition.payload,
            available_at=now + definition.delay,
            created_at=now,
            headers=headers,
        )
        if data.get("unique_key") is None and self.driver.supports(Capability.UNIQUE):
            data["unique_key"] = f"schedule:{name}@{tick:.6f}"
            data["unique_ttl"] = None
        return Message.from_dict(data)

    def seconds_until_due(self, poll_interval: float) -> float:
        """How long :meth:`run` may sleep: until the earliest known next run,
        at most ``poll_interval`` (schedules added by others are seen then).
        """
        if self._next_due is None:
            return poll_interval
        return max(0.0, min(poll_interval, self._next_due - self.clock()))

    def run(self, stop_event: threading.Event | None = None, poll_interval: float = 1.0) -> None:
        """Tick until ``stop_event`` is set, waking for the next due schedule
        and at least every ``poll_interval`` seconds. Errors of one tick are
        logged and the loop goes on.
        """
        if poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        stop = stop_event if stop_event is not None else threading.Event()
        log.info("scheduler started (poll interval %ss)", poll_interval)
        while not stop.is_set():
            try:
                self.tick()
                wait = self.seconds_until_due(poll_interval)
            except Exception:
                log.exception("scheduler tick failed; trying again in %ss", poll_interval)
                wait = poll_interval
            stop.wait(wait)
        log.info("scheduler stopped")

    def list(self) -> builtins.list[Schedule]:
        """Every stored schedule, by name (unreadable ones are logged and left out)."""
        schedules = []
        for record in self.driver.schedules():
            try:
                schedules.append(_schedule(record))
            except ScheduleError as exc:
                log.error("%s", exc)
        return schedules


def _stored_spec(record: ScheduleRecord | None) -> Spec | None:
    if record is None:
        return None
    try:
        return _Definition.from_data(record.name, record.data).spec
    except ScheduleError:
        return None


def _schedule(record: ScheduleRecord) -> Schedule:
    definition = _Definition.from_data(record.name, record.data)
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


class SchedulerThread(threading.Thread):
    """Runs a scheduler in a daemon thread (``jobs worker --with-scheduler``).

    ``start()`` it, and ``stop()`` it at shutdown.
    """

    def __init__(self, scheduler: Scheduler, poll_interval: float = 1.0) -> None:
        super().__init__(name="jobs-scheduler", daemon=True)
        self.scheduler = scheduler
        self.poll_interval = poll_interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        """The thread's body: :meth:`Scheduler.run` until stopped."""
        self.scheduler.run(self.stop_event, self.poll_interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the loop to stop and wait up to ``timeout`` seconds for it."""
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout)


def run_scheduler(
    scheduler: Scheduler,
    *,
    stop_event: threading.Event | None = None,
    poll_interval: float = 1.0,
    handle_signals: bool = False,
) -> None:
    """Run ``scheduler`` in this thread until ``stop_event`` is set.

    With ``handle_signals`` (the ``jobs scheduler`` command), SIGTERM and
    SIGINT stop the loop after the current tick and the previous handlers are
    restored on return; this needs the main thread.
    """
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if handle_signals:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received signal %d; stopping the scheduler", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        scheduler.run(stop, poll_interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class AppScheduling:
    """The scheduling methods of :class:`~jobs_core.app.JobsApp`.

    The app's scheduler works on the app's driver and stores each tick's job
    through the app's :class:`~jobs_core.queue.Queue`, so ``job.queued``
    fires for scheduled jobs as for dispatched ones. Job classes and
    functions given here are registered on the app, as dispatch does.
    """

    if TYPE_CHECKING:

        @property
        def driver(self) -> Driver:
            """The app's driver."""

        @property
        def queue(self) -> Queue:
            """The app's queue."""

        registry: Registry

    _scheduler: Scheduler | None = None

    @property
    def scheduler(self) -> Scheduler:
        """The :class:`Scheduler` of this app (rebuilt when the driver changes)."""
        scheduler = self._scheduler
        if scheduler is None or scheduler.driver is not self.driver:
            scheduler = self._scheduler = Scheduler(
                self.driver, self._enqueue_scheduled, registry=self.registry
            )
        return scheduler

    def _enqueue_scheduled(self, messages: builtins.list[Message]) -> builtins.list[str | None]:
        return self.queue.enqueue(messages)

    def _schedulable(self, job: JobTarget) -> JobTarget:
        if not isinstance(job, str):
            self.registry.register(job)
        return job

    def schedule_at(
        self,
        job: JobTarget,
        when: dt.datetime | float,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Run ``job`` once at ``when``; see :meth:`Scheduler.schedule_at`."""
        return self.scheduler.schedule_at(self._schedulable(job), when, payload, name=name, queue=queue)

    def schedule_in(
        self,
        job: JobTarget,
        delay: float | dt.timedelta,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Run ``job`` once, ``delay`` seconds from now; see :meth:`Scheduler.schedule_in`."""
        return self.scheduler.schedule_in(self._schedulable(job), delay, payload, name=name, queue=queue)

    def schedule_every(
        self,
        job: JobTarget,
        interval: float | dt.timedelta,
        payload: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` every ``interval`` seconds; see :meth:`Scheduler.schedule_every`."""
        return self.scheduler.schedule_every(
            self._schedulable(job), interval, payload, name=name, queue=queue, missed=missed
        )

    def schedule_daily(
        self,
        job: JobTarget,
        payload: Any = None,
        queue: str | None = None,
        time: str | dt.time = "00:00",
        *,
        timezone: str | dt.tzinfo | None = None,
        name: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` every day at ``time``; see :meth:`Scheduler.schedule_daily`."""
        return self.scheduler.schedule_daily(
            self._schedulable(job), payload, queue, time, timezone=timezone, name=name, missed=missed
        )

    def schedule_cron(
        self,
        job: JobTarget,
        expression: str,
        payload: Any = None,
        *,
        timezone: str | dt.tzinfo | None = None,
        name: str | None = None,
        queue: str | None = None,
        missed: Missed | str = Missed.ONCE,
    ) -> str:
        """Run ``job`` on a cron expression; see :meth:`Scheduler.schedule_cron`."""
        return self.scheduler.schedule_cron(
            self._schedulable(job),
            expression,
            payload,
            timezone=timezone,
            name=name,
            queue=queue,
            missed=missed,
        )

    def schedules(self) -> builtins.list[Schedule]:
        """Every stored schedule, by name."""
        return self.scheduler.list()

    def pause_schedule(self, name: str) -> None:
        """Stop firing schedule ``name`` until resumed (:class:`ScheduleNotFound` if unknown)."""
        self.scheduler.pause(name)

    def resume_schedule(self, name: str) -> None:
        """Fire schedule ``name`` again from its next tick."""
        self.scheduler.resume(name)

    def remove_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; ``False`` if there was none."""
        return self.scheduler.remove(name)

    def run_scheduler(self, stop_event: threading.Event | None = None, poll_interval: float = 1.0) -> None:
        """Fire this app's schedules in this thread until ``stop_event`` is set."""
        run_scheduler(self.scheduler, stop_event=stop_event, poll_interval=poll_interval)
