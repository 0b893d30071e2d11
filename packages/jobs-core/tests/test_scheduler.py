"""The scheduler on the memory driver: declaring, firing, missed ticks, one-shots, pause."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jobs_core import Driver, Job, Registry, job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import (
    BackendUnavailable,
    InvalidName,
    PayloadNotJSON,
    ScheduleError,
    ScheduleNotFound,
)
from jobs_core.message import Message, ScheduleRecord
from jobs_core.schedule import Missed
from jobs_core.scheduler import SCHEDULE_HEADER, TICK_HEADER, Schedule, Scheduler, default_name

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()
BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """A settable clock, so that tests control what "now" is."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Report(Job):
    job_name = "tests.scheduler.Report"
    queue = "reports"
    max_retries = 5

    def handle(self, payload: Any) -> Any:
        return payload


@job(name="tests.scheduler.ping", queue="pings")
def ping(payload: Any) -> None:
    return None


@pytest.fixture
def store() -> str:
    return f"memory://sched-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def driver(store: str) -> Iterator[MemoryDriver]:
    driver = MemoryDriver(store)
    yield driver
    driver.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(driver: MemoryDriver, clock: Clock) -> Scheduler:
    return Scheduler(driver, clock=clock, grace=1.0)


def drain(driver: Driver, queue: str) -> list[Message]:
    """Every message waiting on ``queue`` (delayed ones included), acknowledged."""
    out: list[Message] = []
    while True:
        got = driver.reserve([queue], limit=100)
        if not got:
            pending = driver.stats(queue)
            if pending.delayed == 0:
                return out
            time.sleep(0.05)
            continue
        for delivery in got:
            driver.ack(delivery)
        out.extend(d.message for d in got)


def ticks_of(messages: Sequence[Message]) -> list[float]:
    return sorted(float(m.headers[TICK_HEADER]) for m in messages)


# -- declaring ---------------------------------------------------------------------


def test_declaring_the_same_schedule_again_updates_instead_of_duplicating(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    first = scheduler.schedule_every(Report, 60, {"team": "a"})
    clock.now += 25  # a restart 25 seconds later declares it again
    again = scheduler.schedule_every(Report, 60, {"team": "a"})
    assert again == first
    assert first == default_name("tests.scheduler.Report", scheduler.get(first).spec, {"team": "a"})
    assert first.startswith("tests.scheduler.Report:every:")
    (record,) = driver.schedules()
    assert record.next_run_at == T0 + 60, "re-declaring restarted the interval's rhythm"
    other = scheduler.schedule_every(Report, 60, {"team": "b"})
    assert other != first
    assert [s.name for s in scheduler.list()] == sorted([first, other])


def test_a_named_schedule_is_replaced_and_keeps_its_claimed_tick(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    name = scheduler.schedule_every(Report, 10, name="report")
    assert name == "report"
    clock.now = T0 + 10
    assert scheduler.tick() == 1
    scheduler.schedule_cron(Report, "*/5 * * * *", {"v": 2}, name="report", timezone="Europe/Berlin")
    schedule = scheduler.get("report")
    assert (schedule.kind, schedule.description, schedule.payload) == (
        "cron",
        "cron '*/5 * * * *' Europe/Berlin",
        {"v": 2},
    )
    assert schedule.last_run_at == T0 + 10
    assert schedule.next_run_at == T0 + 300
    assert len(driver.schedules()) == 1


def test_re_declaring_keeps_a_pause(scheduler: Scheduler) -> None:
    name = scheduler.schedule_daily(Report, time="07:00")
    scheduler.pause(name)
    scheduler.schedule_daily(Report, time="07:00")
    assert scheduler.get(name).paused is True


def test_the_stored_message_keeps_job_defaults_and_fluent_overrides(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    configured = Report().on_queue("urgent").retries(9).priority(4).timeout(30).retry_after(7, "fixed")
    scheduler.schedule_in(configured, 5, {"id": 1})
    scheduler.schedule_in(ping, 5, [1, 2])
    scheduler.schedule_in(Report, 5, queue="other")
    clock.now = T0 + 5
    assert scheduler.tick() == 3
    (urgent,) = drain(driver, "urgent")
    assert (urgent.name, urgent.payload, urgent.max_retries, urgent.priority, urgent.timeout) == (
        "tests.scheduler.Report",
        {"id": 1},
        9,
        4,
        30.0,
    )
    assert (urgent.retry.backoff, urgent.retry.delay) == ("fixed", 7.0)
    (pinged,) = drain(driver, "pings")
    assert (pinged.name, pinged.payload) == ("tests.scheduler.ping", [1, 2])
    (other,) = drain(driver, "other")
    assert (other.name, other.max_retries) == ("tests.scheduler.Report", 5)


def test_a_job_given_by_name_uses_the_registered_class_or_plain_defaults(
    driver: MemoryDriver, clock: Clock
) -> None:
    registry = Registry()
    registry.register(Report)
    scheduler = Scheduler(driver, registry=registry, clock=clock)
    scheduler.schedule_at("tests.scheduler.Report", T0, "known")
    scheduler.schedule_at("elsewhere.Job", T0, "unknown", queue="remote")
    assert scheduler.tick() == 2
    (known,) = drain(driver, "reports")
    assert (known.payload, known.max_retries) == ("known", 5)
    (unknown,) = drain(driver, "remote")
    assert (unknown.name, unknown.payload) == ("elsewhere.Job", "unknown")


def test_a_job_with_a_delay_is_available_that_long_after_its_tick(driver: MemoryDriver, clock: Clock) -> None:
    clock.now = time.time()
    scheduler = Scheduler(driver, clock=clock)
    scheduler.schedule_at(Report().delay(0.3), clock.now)
    assert scheduler.tick() == 1
    assert driver.reserve(["reports"]) == []
    assert driver.stats("reports").delayed == 1
    assert len(driver.reserve(["reports"], timeout=2.0)) == 1


@pytest.mark.parametrize(
    ("declare", "error", "match"),
    [
        (lambda s: s.schedule_every(Report, 0), ScheduleError, "interval must be at least"),
        (lambda s: s.schedule_every(Report, "60"), ScheduleError, "number of seconds or a timedelta"),
        (lambda s: s.schedule_every(Report, 60, missed="sometimes"), ScheduleError, "'skip', 'once'"),
        (lambda s: s.schedule_in(Report, -1), ScheduleError, "delay must be >= 0"),
        (lambda s: s.schedule_at(Report, dt.datetime(2026, 1, 1)), ScheduleError, "naive datetime"),
        (lambda s: s.schedule_cron(Report, "*/5 * * *"), ScheduleError, "expected 5 fields"),
        (lambda s: s.schedule_cron(Report, "0 0 30 2 *"), ScheduleError, "never fires"),
        (lambda s: s.schedule_daily(Report, timezone="Europe/Nowhere"), ScheduleError, "Europe/Nowhere"),
        (lambda s: s.schedule_daily(Report, time="24:00"), ScheduleError, "out of range"),
        (lambda s: s.schedule_every(Report, 60, name="has space"), InvalidName, "schedule name"),
        (lambda s: s.schedule_every(Report, 60, queue="bad queue"), InvalidName, "queue name"),
        (lambda s: s.schedule_every(Report, 60, {"when": dt.date(2026, 1, 1)}), PayloadNotJSON, "date"),
    ],
)
def test_bad_declarations_are_refused_and_store_nothing(
    scheduler: Scheduler, driver: MemoryDriver, declare: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        declare(scheduler)
    assert driver.schedules() == []


# -- firing ------------------------------------------------------------------------


def test_an_interval_fires_once_per_tick(scheduler: Scheduler, driver: MemoryDriver, clock: Clock) -> None:
    name = scheduler.schedule_every(ping, 10, {"n": 1}, coalesce=False)  # every tick, though none ran
    clock.now = T0 + 9.9
    assert scheduler.tick() == 0
    clock.now = T0 + 10
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0, "the same tick fired twice"
    clock.now = T0 + 20.5
    assert scheduler.tick() == 1
    messages = drain(driver, "pings")
    assert ticks_of(messages) == [T0 + 10, T0 + 20]
    assert {m.headers[SCHEDULE_HEADER] for m in messages} == {name}
    assert scheduler.get(name).next_run_at == T0 + 30
    assert scheduler.get(name).last_run_at == T0 + 20


def test_two_schedulers_on_one_store_fire_each_tick_once(store: str, clock: Clock) -> None:
    with MemoryDriver(store) as one, MemoryDriver(store) as two:
        first, second = Scheduler(one, clock=clock), Scheduler(two, clock=clock)
        first.schedule_every(ping, 10, coalesce=False)
        for step in range(1, 6):
            clock.now = T0 + 10 * step
            assert first.tick() + second.tick() == 1
        assert len(drain(one, "pings")) == 5


class StaleView(MemoryDriver):
    """A memory driver whose ``schedules()`` can return an older snapshot, as a
    scheduler that read the store just before another one fired would see it.
    """

    snapshot: list[ScheduleRecord] | None = None

    def schedules(self) -> list[ScheduleRecord]:
        return list(self.snapshot) if self.snapshot is not None else super().schedules()


def test_a_scheduler_with_a_stale_view_cannot_fire_a_claimed_tick_again(store: str, clock: Clock) -> None:
    stale = StaleView(store)
    with MemoryDriver(store) as fresh, stale:
        first, late = Scheduler(fresh, clock=clock), Scheduler(stale, clock=clock)
        first.schedule_every(ping, 10)
        clock.now = T0 + 10
        stale.snapshot = stale.schedules()  # read before the first scheduler fired
        assert first.tick() == 1
        assert len(drain(fresh, "pings")) == 1  # done: its unique key is free again
        assert late.tick() == 0, "a tick claimed by another scheduler was enqueued again"
        assert drain(fresh, "pings") == []


def test_scheduled_messages_carry_a_unique_key_per_tick(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    name = scheduler.schedule_every(ping, 10, coalesce=False)
    clock.now = T0 + 10
    scheduler.tick()
    (message,) = drain(driver, "pings")
    assert message.unique_key == f"schedule:{name}@{T0 + 10:.6f}"
    scheduler.schedule_every(ping.unique("only-one"), 10, name="own-key")
    clock.now = T0 + 20
    scheduler.tick()
    keys = {m.headers[SCHEDULE_HEADER]: m.unique_key for m in drain(driver, "pings")}
    assert keys["own-key"] == "only-one"


def test_a_job_whose_unique_key_is_still_held_is_not_counted(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    scheduler.schedule_every(ping.unique("single"), 10)
    clock.now = T0 + 10
    assert scheduler.tick() == 1
    clock.now = T0 + 20
    assert scheduler.tick() == 0, "the previous run is unfinished, so this one is dropped"
    assert driver.stats("pings").pending == 1


# -- missed ticks after a restart ---------------------------------------------------


@pytest.mark.parametrize(
    ("missed", "expected"),
    [
        (Missed.SKIP, []),
        (Missed.ONCE, [T0 + 40]),
        (Missed.ALL, [T0 + 20, T0 + 30, T0 + 40]),
    ],
)
def test_a_restarted_scheduler_keeps_its_schedules_and_applies_the_missed_policy(
    store: str, missed: Missed, expected: list[float]
) -> None:
    clock = Clock()
    with MemoryDriver(store) as before:
        scheduler = Scheduler(before, clock=clock, grace=1.0)
        name = scheduler.schedule_every(ping, 10, missed=missed)
        clock.now = T0 + 10
        assert scheduler.tick() == 1
        assert ticks_of(drain(before, "pings")) == [T0 + 10]
    # The scheduler was down from T0+10 to T0+45: ticks T0+20, +30 and +40 were missed.
    clock.now = T0 + 45
    with MemoryDriver(store) as after:
        restarted = Scheduler(after, clock=clock, grace=1.0)
        assert [s.name for s in restarted.list()] == [name]
        assert restarted.tick() == len(expected)
        assert ticks_of(drain(after, "pings")) == expected
        assert restarted.get(name).next_run_at == T0 + 50
        clock.now = T0 + 50
        assert restarted.tick() == 1, "the first tick after the restart is on time"
        assert ticks_of(drain(after, "pings")) == [T0 + 50]


def test_skip_still_runs_a_tick_reached_within_the_grace_period(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    scheduler.schedule_every(ping, 10, missed="skip")
    clock.now = T0 + 10.5  # half a second late, within the one-second grace
    assert scheduler.tick() == 1
    clock.now = T0 + 21.5  # one and a half seconds late: missed
    assert scheduler.tick() == 0


def test_all_runs_at_most_max_catch_up_ticks(driver: MemoryDriver, clock: Clock) -> None:
    scheduler = Scheduler(driver, clock=clock, max_catch_up=5)
    scheduler.schedule_every(ping, 10, missed=Missed.ALL)
    clock.now = T0 + 200
    assert scheduler.tick() == 5
    assert ticks_of(drain(driver, "pings")) == [T0 + 160, T0 + 170, T0 + 180, T0 + 190, T0 + 200]


def test_a_daily_schedule_catches_up_missed_days(store: str) -> None:
    clock = Clock(dt.datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN).timestamp())
    with MemoryDriver(store) as driver:
        scheduler = Scheduler(driver, clock=clock)
        once = scheduler.schedule_daily(ping, time="02:30", timezone="Europe/Berlin")
        every = scheduler.schedule_daily(ping, {"all": True}, time="02:30", timezone=BERLIN, missed="all")
        clock.now = dt.datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN).timestamp()
        assert scheduler.tick() == 1 + 3
        runs = drain(driver, "pings")
        by_schedule: dict[str, list[str]] = {}
        for message in runs:
            when = dt.datetime.fromtimestamp(float(message.headers[TICK_HEADER]), BERLIN)
            by_schedule.setdefault(message.headers[SCHEDULE_HEADER], []).append(when.strftime("%d %H:%M %Z"))
        assert sorted(by_schedule[every]) == ["28 02:30 CET", "29 03:00 CEST", "30 02:30 CEST"]
        assert by_schedule[once] == ["30 02:30 CEST"]


def test_a_daily_schedule_fires_at_the_right_instants_across_the_spring_change(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    clock.now = dt.datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN).timestamp()
    name = scheduler.schedule_daily(ping, time="02:30", timezone="Europe/Berlin")
    next_run = scheduler.get(name).next_run
    assert next_run == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.timezone.utc)
    assert next_run is not None
    clock.now = next_run.timestamp() - 0.5
    assert scheduler.tick() == 0
    clock.now = next_run.timestamp()
    assert scheduler.tick() == 1
    after = scheduler.get(name).next_run
    assert after is not None and after.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") == "03-30 02:30 CEST"


# -- one-shots ------------------------------------------------------------------------


def test_a_one_shot_fires_once_and_is_removed(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    name = scheduler.schedule_in(Report, dt.timedelta(seconds=5), {"once": True})
    assert scheduler.get(name).description == "at 2026-06-01T12:00:05Z"
    clock.now = T0 + 4
    assert scheduler.tick() == 0
    clock.now = T0 + 5
    assert scheduler.tick() == 1
    assert scheduler.list() == []
    clock.now = T0 + 100
    assert scheduler.tick() == 0
    assert [m.payload for m in drain(driver, "reports")] == [{"once": True}]


def test_a_one_shot_in_the_past_fires_at_the_next_tick(scheduler: Scheduler, driver: MemoryDriver) -> None:
    scheduler.schedule_at(Report, dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    assert scheduler.tick() == 1
    assert len(drain(driver, "reports")) == 1


def test_a_one_shot_claimed_by_a_scheduler_that_died_is_cleaned_up(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    name = scheduler.schedule_at(Report, T0 + 5)
    assert driver.claim_tick(name, T0 + 5)  # claimed, then the claimer died
    clock.now = T0 + 6
    assert scheduler.tick() == 0
    assert scheduler.list() == []


# -- pause, resume, remove, list --------------------------------------------------------


def test_a_paused_schedule_does_not_fire_and_resumes_without_catching_up(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock
) -> None:
    name = scheduler.schedule_every(ping, 10, missed="all")
    scheduler.pause(name)
    assert scheduler.get(name).paused
    clock.now = T0 + 35
    assert scheduler.tick() == 0
    scheduler.resume(name)
    assert scheduler.get(name).next_run_at == T0 + 40
    assert scheduler.tick() == 0
    clock.now = T0 + 40
    assert scheduler.tick() == 1
    assert ticks_of(drain(driver, "pings")) == [T0 + 40]


def test_unknown_names_are_reported(scheduler: Scheduler) -> None:
    for operation in (scheduler.pause, scheduler.resume, scheduler.get):
        with pytest.raises(ScheduleNotFound, match="no schedule named 'nope'"):
            operation("nope")
    assert scheduler.remove("nope") is False


def test_remove_stops_a_schedule(scheduler: Scheduler, clock: Clock) -> None:
    name = scheduler.schedule_every(ping, 10)
    assert scheduler.remove(name) is True
    clock.now = T0 + 10
    assert scheduler.tick() == 0
    assert scheduler.list() == []


def test_list_returns_typed_schedules_that_serialise_to_json(scheduler: Scheduler) -> None:
    name = scheduler.schedule_cron(Report, "0 7 * * mon", {"w": 1}, timezone="Europe/Berlin", missed="skip")
    (schedule,) = scheduler.list()
    assert isinstance(schedule, Schedule)
    data = json.loads(json.dumps(schedule.to_dict()))
    assert data == {
        "name": name,
        "job": "tests.scheduler.Report",
        "payload": {"w": 1},
        "queue": "reports",
        "kind": "cron",
        "description": "cron '0 7 * * mon' Europe/Berlin",
        "missed": "skip",
        "timezone": "Europe/Berlin",
        "next_run_at": dt.datetime(2026, 6, 8, 7, 0, tzinfo=BERLIN).timestamp(),
        "last_run_at": None,
        "paused": False,
        "updated_at": T0,
    }


def test_an_unreadable_stored_schedule_is_logged_and_the_others_still_fire(
    scheduler: Scheduler, driver: MemoryDriver, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    driver.save_schedule(ScheduleRecord("broken", {"v": 1, "spec": {"kind": "weekly"}}, next_run_at=T0))
    scheduler.schedule_every(ping, 10)
    clock.now = T0 + 10
    with caplog.at_level(logging.ERROR, logger="jobs_core.scheduler"):
        assert scheduler.tick() == 1
        assert [s.name for s in scheduler.list()] != ["broken"]
    assert "schedule 'broken' is stored in a form this version cannot read" in caplog.text


# -- enqueue failures -------------------------------------------------------------------


def test_a_transient_enqueue_failure_is_retried(driver: MemoryDriver, clock: Clock) -> None:
    failures = [BackendUnavailable("database at db:5432 is not answering")]

    def enqueue(messages: list[Message]) -> list[str | None]:
        if failures:
            raise failures.pop()
        return driver.enqueue(messages)

    scheduler = Scheduler(driver, enqueue, clock=clock)
    scheduler.schedule_every(ping, 10)
    clock.now = T0 + 10
    assert scheduler.tick() == 1
    assert len(drain(driver, "pings")) == 1


def test_a_tick_claimed_during_an_outage_is_enqueued_once_the_backend_is_back(
    driver: MemoryDriver, clock: Clock
) -> None:
    down = [True]

    def enqueue(messages: list[Message]) -> list[str | None]:
        if down[0]:
            raise BackendUnavailable("database at db:5432 is not answering")
        return driver.enqueue(messages)

    scheduler = Scheduler(driver, enqueue, clock=clock, enqueue_attempts=1)
    scheduler.schedule_every(ping, 10, coalesce=False)
    clock.now = T0 + 10
    assert scheduler.tick() == 0
    clock.now = T0 + 15
    assert scheduler.tick() == 0, "the backend is still down"
    assert [(name, tick) for name, tick, _ in scheduler.pending] == [(scheduler.list()[0].name, T0 + 10)]
    down[0] = False
    clock.now = T0 + 20
    assert scheduler.tick() == 2, "the held tick and the new one"
    assert scheduler.pending == []
    assert ticks_of(drain(driver, "pings")) == [T0 + 10, T0 + 20]


def test_the_held_ticks_are_bounded(
    driver: MemoryDriver, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    def enqueue(messages: list[Message]) -> list[str | None]:
        raise BackendUnavailable("database at db:5432 is not answering")

    scheduler = Scheduler(driver, enqueue, clock=clock, enqueue_attempts=1, max_pending=2)
    scheduler.schedule_every(ping, 10)
    with caplog.at_level(logging.ERROR, logger="jobs_core.scheduler"):
        for step in (1, 2, 3):
            clock.now = T0 + 10 * step
            scheduler.tick()
    assert [tick for _, tick, _ in scheduler.pending] == [T0 + 20, T0 + 30]
    assert "was claimed but never enqueued (backlog full)" in caplog.text


def test_a_permanent_enqueue_failure_loses_only_that_tick(
    driver: MemoryDriver, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def enqueue(messages: list[Message]) -> list[str | None]:
        calls.append(len(messages))
        if len(calls) == 1:
            raise RuntimeError("listener exploded")
        return driver.enqueue(messages)

    scheduler = Scheduler(driver, enqueue, clock=clock)
    scheduler.schedule_every(ping, 10)
    clock.now = T0 + 10
    with caplog.at_level(logging.ERROR, logger="jobs_core.scheduler"):
        assert scheduler.tick() == 0
    assert "was claimed but its job was not enqueued" in caplog.text
    clock.now = T0 + 20
    assert scheduler.tick() == 1
    assert ticks_of(drain(driver, "pings")) == [T0 + 20]


# -- the run loop, in real time ------------------------------------------------------------


def test_schedule_in_one_second_runs_once_about_a_second_later(driver: MemoryDriver) -> None:
    scheduler = Scheduler(driver)
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop, 0.2))
    loop.start()
    try:
        declared = time.time()
        scheduler.schedule_in(ping, 1, {"hello": "later"})
        got = driver.reserve(["pings"], timeout=5.0)
        arrived = time.time()
        assert [d.message.payload for d in got] == [{"hello": "later"}]
        assert 0.9 <= arrived - declared <= 2.0, f"ran after {arrived - declared:.2f}s"
        assert driver.reserve(["pings"], timeout=1.5) == [], "the one-shot ran twice"
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
