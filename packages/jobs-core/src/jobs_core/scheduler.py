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

Over 400 lines: this module holds the :class:`Scheduler` alone, whose
declaring, listing and firing share its driver, clock and held ticks; what a schedule
is lives in :mod:`jobs_core.schedule_data`, running one in
:mod:`jobs_core.scheduler_runner`, and the app's and facade's methods, made
from the scheduler's, in :mod:`jobs_core.scheduling`.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError, JobsError, ScheduleError, ScheduleNotFound
from jobs_core.job import Job, job_instance
from jobs_core.message import Message, ScheduleRecord, new_id, validate_queue_name
from jobs_core.registry import Registry
from jobs_core.schedule import (
    At,
    Cron,
    Every,
    Missed,
    Spec,
    interval_seconds,
    timestamp,
)
from jobs_core.schedule_data import (
    DATA_VERSION,
    SCHEDULE_HEADER,
    SCHEDULE_NAME_PATTERN,
    TEMPLATE_SKIP,
    TICK_HEADER,
    Definition,
    JobTarget,
    Schedule,
    default_name,
    schedule_view,
    stored_spec,
    utc_text,
    validate_schedule_name,
)
from jobs_core.serializer import check_json

log = logging.getLogger("jobs_core.scheduler")

Enqueue = Callable[[list[Message]], object]
"""What a scheduler calls to store the messages of a tick (``Queue.enqueue``,
``Driver.enqueue``): returns a list of ids, ``None`` for a dropped duplicate."""

__all__ = [
    "DATA_VERSION",
    "SCHEDULE_HEADER",
    "SCHEDULE_NAME_PATTERN",
    "TICK_HEADER",
    "Enqueue",
    "JobTarget",
    "Schedule",
    "Scheduler",
    "default_name",
    "validate_schedule_name",
]


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
        coalesce: bool | None = None,
    ) -> str:
        """Run ``job`` every ``interval`` seconds (or a timedelta), first one
        interval from now. Returns the name.

        With ``coalesce`` (the default, unless ``missed="all"`` asks for every
        tick), a tick is not enqueued while the job
        of an earlier tick of this schedule is still unfinished (waiting, or
        running): workers that were down for two minutes find one heartbeat
        waiting, not 120. It needs a driver with
        :attr:`~jobs_core.driver.Capability.UNIQUE` (others enqueue every
        tick) and a job without its own unique key. ``coalesce=False``
        enqueues every tick.
        """
        seconds = interval_seconds(interval)
        policy = Missed.parse(missed)
        if coalesce is None:
            coalesce = policy is not Missed.ALL
        if not isinstance(coalesce, bool):
            raise ConfigurationError(f"coalesce must be True, False or None, got {coalesce!r}")
        return self._declare(
            job,
            Every(seconds, self.clock()),
            payload,
            name=name,
            queue=queue,
            missed=policy,
            coalesce=coalesce,
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
        coalesce: bool = False,
    ) -> str:
        now = self.clock()
        message = self._message_for(job, payload, queue, now)
        delay = message.available_at - message.created_at
        self.driver.validate([message.replace(available_at=time.time() + delay)])
        name = validate_schedule_name(name) if name is not None else default_name(message.name, spec, payload)
        existing = self._find(name)
        old_spec = stored_spec(existing)
        same = old_spec is not None and old_spec.identity() == spec.identity()
        if same and isinstance(old_spec, Every):
            spec = old_spec  # keep the rhythm of a re-declared interval
        if same and existing is not None and existing.next_run_at is not None:
            next_run_at: float | None = existing.next_run_at
        elif isinstance(spec, At):
            next_run_at = spec.at
        else:
            next_run_at = spec.next_after(now)
        template = {k: v for k, v in message.to_dict().items() if k not in TEMPLATE_SKIP}
        definition = Definition(
            spec=spec,
            job=message.name,
            payload=payload,
            template=template,
            delay=delay,
            missed=missed,
            coalesce=coalesce,
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
        return schedule_view(self._get(name))

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
        spec = Definition.from_data(name, record.data).spec
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
                    definition = Definition.from_data(record.name, record.data)
                except ScheduleError as exc:
                    log.error("%s; it is skipped", exc)
                    continue
                count, upcoming = self._fire(record, definition, now)
                enqueued += count
            if upcoming is not None and (next_due is None or upcoming < next_due):
                next_due = upcoming
        self._next_due = next_due
        return enqueued

    def _fire(self, record: ScheduleRecord, definition: Definition, now: float) -> tuple[int, float | None]:
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

    def _enqueue(self, name: str, definition: Definition, tick: float, now: float) -> bool:
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
            utc_text(tick),
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

    def _tick_message(self, name: str, definition: Definition, tick: float, now: float) -> Message:
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
            # Coalescing: one key for every tick, held until the job finishes.
            data["unique_key"] = f"schedule:{name}" if definition.coalesce else f"schedule:{name}@{tick:.6f}"
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
                schedules.append(schedule_view(record))
            except ScheduleError as exc:
                log.error("%s", exc)
        return schedules
