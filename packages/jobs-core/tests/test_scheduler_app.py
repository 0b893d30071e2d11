"""Scheduling through the app and the ``Jobs`` facade, with a real worker running the jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Jobs, JobsApp, job
from jobs_core.events import JobEvent
from jobs_core.facade import set_default_app
from jobs_core.scheduler import SCHEDULE_HEADER

RUNS: list[tuple[float, Any]] = []


@job(name="tests.scheduler_app.record", queue="recorded")
def record(payload: Any) -> None:
    RUNS.append((time.time(), payload))


@pytest.fixture
def app() -> Iterator[JobsApp]:
    RUNS.clear()
    with JobsApp("memory://") as app:
        yield app


def test_schedule_in_one_second_runs_the_job_once_about_a_second_later(app: JobsApp) -> None:
    worker = app.worker(
        "recorded",
        poll_interval=0.1,
        install_signal_handlers=False,
        services=[lambda stop: app.scheduler.run(stop, 0.2)],
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        declared = time.time()
        app.schedule_in(record, 1, {"n": 1})
        deadline = time.time() + 5
        while not RUNS and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)  # long enough for a second run to show up
    finally:
        worker.stop()
        thread.join(10)
    assert [payload for _, payload in RUNS] == [{"n": 1}], "the job did not run exactly once"
    delay = RUNS[0][0] - declared
    assert 0.9 <= delay <= 2.0, f"ran {delay:.2f}s after being scheduled"
    assert app.schedules() == [], "the one-shot schedule was kept after it fired"


def test_scheduled_jobs_go_through_the_apps_queue_and_fire_job_queued(app: JobsApp) -> None:
    queued: list[JobEvent] = []
    app.listen("job.queued", queued.append)
    name = app.schedule_every(record, 0.2, {"tick": True})
    stop = threading.Event()
    loop = threading.Thread(target=app.run_scheduler, args=(stop, 0.05))
    loop.start()
    time.sleep(0.5)
    stop.set()
    loop.join(5)
    assert queued, "no job.queued event for a scheduled job"
    assert {event.message.headers[SCHEDULE_HEADER] for event in queued} == {name}
    assert app.work("recorded") == len(queued)
    assert [payload for _, payload in RUNS] == [{"tick": True}] * len(queued)


def test_the_app_manages_schedules_by_name(app: JobsApp) -> None:
    name = app.schedule_daily(record, {"d": 1}, time="07:30", timezone="Europe/Berlin")
    cron = app.schedule_cron("tests.scheduler_app.record", "*/10 * * * *", name="ten-minutes")
    at = app.schedule_at(record, time.time() + 3600)
    every = app.schedule_every(record, 60, missed="skip")
    assert [s.name for s in app.schedules()] == sorted([name, cron, at, every])
    app.pause_schedule(cron)
    assert [s.paused for s in app.schedules() if s.name == cron] == [True]
    app.resume_schedule(cron)
    assert [s.paused for s in app.schedules() if s.name == cron] == [False]
    assert app.remove_schedule(at) is True
    assert app.remove_schedule(at) is False
    assert "tests.scheduler_app.record" in app.registry


def test_the_scheduler_follows_a_reconfigured_app(app: JobsApp) -> None:
    app.schedule_every(record, 60)
    app.configure("memory://")
    assert app.schedules() == [], "the scheduler kept the old driver"
    assert app.scheduler.driver is app.driver


def test_the_facade_schedules_on_the_default_app(app: JobsApp) -> None:
    previous = set_default_app(app)
    try:
        name = Jobs.schedule_every(record, 30, {"f": 1})
        one_shot = Jobs.schedule_in(record, 60)
        Jobs.schedule_at(record, time.time() + 60, name="later")
        Jobs.schedule_daily(record, time="06:00")
        Jobs.schedule_cron(record, "@hourly", name="hourly")
        assert {s.name for s in Jobs.schedules()} == {name, one_shot, "later", "hourly"} | {
            s.name for s in app.schedules() if s.kind == "daily"
        }
        Jobs.pause_schedule("hourly")
        Jobs.resume_schedule("hourly")
        assert Jobs.remove_schedule("hourly") is True
        assert "hourly" not in {s.name for s in Jobs.schedules()}
    finally:
        set_default_app(previous)


def test_each_fired_tick_is_logged_at_info(app: JobsApp, caplog: pytest.LogCaptureFixture) -> None:
    name = app.schedule_every(record, 60, {"n": 1}, name="minutely")
    caplog.set_level("INFO", logger="jobs_core.scheduler")
    assert app.scheduler.tick(now=time.time() + 61) == 1
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and "fired" in r.getMessage()]
    assert line.startswith(f"schedule {name!r}: fired for ")
    assert "UTC: job tests.scheduler_app.record " in line and line.endswith("on queue 'recorded'")
