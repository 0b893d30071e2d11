"""Progress reports and cancellation through a real worker, on the memory driver."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from jobs_core import Job, JobsApp, job
from jobs_core.cli import cli
from jobs_core.context import is_cancelled, report_progress
from jobs_core.errors import ConfigurationError, JobCancelled
from jobs_core.worker import Worker

WAIT = 20.0
STARTED: dict[str, threading.Event] = {}
RUNS: dict[str, int] = {}


def _wait(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Counting(Job):
    job_name = "tests.progress.counting"

    def handle(self, payload: Any) -> Any:
        release = STARTED[payload]
        n = 0
        while not release.is_set():
            n += 1
            self.progress(n, None, f"step {n}")  # a tight loop: coalesced by the worker
        return {"steps": n}


class Polite(Job):
    """Checks the flag between steps."""

    job_name = "tests.progress.polite"
    max_retries = 3

    def handle(self, payload: Any) -> None:
        RUNS[payload] = RUNS.get(payload, 0) + 1
        STARTED[payload].set()
        while True:
            self.check_cancelled()
            time.sleep(0.01)


class Sleepy(Job):
    job_name = "tests.progress.sleepy"
    max_retries = 3

    async def handle(self, payload: Any) -> None:
        RUNS[payload] = RUNS.get(payload, 0) + 1
        STARTED[payload].set()
        await asyncio.sleep(300)


class Stubborn(Job):
    """Never looks at the flag: only a child process killed stops it."""

    job_name = "tests.progress.stubborn"
    max_retries = 3
    time_limit = 300

    def handle(self, payload: Any) -> None:
        time.sleep(300)


@job(name="tests.progress.function")
def function_job(payload: Any) -> str:
    STARTED[payload].set()
    while not is_cancelled():
        report_progress(1, 2, "half")
        time.sleep(0.01)
    return "noticed"


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp(f"memory://progress-{uuid.uuid4().hex}", load_plugins=False) as application:
        for target in (Counting, Polite, Sleepy, Stubborn, function_job):
            application.register(target)
        yield application


def _start(app: JobsApp, concurrency: int = 1) -> tuple[Worker, threading.Thread]:
    worker = app.worker(
        "default", concurrency=concurrency, stop_when_empty=True, install_signal_handlers=False, grace=5.0
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def test_progress_of_a_job_in_a_tight_loop_shows_in_status(app: JobsApp) -> None:
    key = uuid.uuid4().hex
    STARTED[key] = threading.Event()
    ident = app.dispatch(Counting, key)
    assert ident is not None
    _, thread = _start(app)
    assert _wait(lambda: app.status(ident).progress is not None), "no progress was saved"
    running = app.status(ident)
    assert running.state == "running" and running.worker is not None and ":" in running.worker
    assert running.progress is not None and running.progress.note.startswith("step ")
    assert running.progress.total is None and running.progress.fraction is None
    shown = CliRunner().invoke(cli, ["status", ident, "--url", str(app.driver.url)])
    assert "progress:" in shown.output and "step " in shown.output
    STARTED[key].set()
    thread.join(WAIT)
    assert app.result(ident, timeout=WAIT)["steps"] >= running.progress.done


@pytest.mark.parametrize(("cls", "concurrency"), [(Polite, 1), (Polite, 3), (Sleepy, 1), (Sleepy, 3)])
def test_a_running_job_that_is_cancelled_ends_cancelled_and_is_never_retried(
    app: JobsApp, cls: type[Job], concurrency: int
) -> None:
    key = uuid.uuid4().hex
    STARTED[key] = threading.Event()
    ident = app.dispatch(cls, key)
    assert ident is not None
    _, thread = _start(app, concurrency)
    assert STARTED[key].wait(WAIT)
    assert app.cancel(ident) == "requested"
    assert app.status(ident).cancel_requested
    thread.join(WAIT)
    assert not thread.is_alive(), "the worker did not stop the cancelled job"
    assert app.status(ident).state == "cancelled"
    with pytest.raises(JobCancelled):
        app.result(ident)
    assert RUNS[key] == 1
    assert app.stats() == {"pending": 0, "delayed": 0, "reserved": 0, "completed": 0, "failed": 0}


def test_a_sync_job_with_a_timeout_is_stopped_when_cancelled(app: JobsApp) -> None:
    ident = app.dispatch(Stubborn)
    assert ident is not None
    _, thread = _start(app)
    assert _wait(lambda: app.status(ident).state == "running")
    time.sleep(0.2)  # let the child process start
    assert app.cancel(ident) == "requested"
    thread.join(WAIT)
    assert not thread.is_alive(), "the child process of the cancelled job was not stopped"
    assert app.status(ident).state == "cancelled"
    assert app.stats()["failed"] == 0


def test_a_function_job_reports_progress_and_sees_its_cancellation(app: JobsApp) -> None:
    key = uuid.uuid4().hex
    STARTED[key] = threading.Event()
    ident = app.dispatch(function_job, key)
    assert ident is not None
    _, thread = _start(app)
    assert _wait(lambda: app.status(ident).progress is not None)
    progress = app.status(ident).progress
    assert progress is not None and (progress.done, progress.total, progress.note) == (1, 2, "half")
    assert progress.fraction == 0.5
    result = CliRunner().invoke(cli, ["cancel", ident, "--url", str(app.driver.url)])
    assert result.exit_code == 0 and "asked the worker" in result.output
    thread.join(WAIT)
    assert app.status(ident).state == "cancelled"


def test_a_waiting_job_that_is_cancelled_never_runs(app: JobsApp) -> None:
    key = uuid.uuid4().hex
    STARTED[key] = threading.Event()
    ident = app.dispatch(Polite, key)
    assert ident is not None
    assert app.cancel(ident) == "removed"
    assert app.work("default") == 0
    assert key not in RUNS
    assert app.cancel(ident) == "finished"


def test_progress_outside_a_worker_does_nothing_and_bad_values_are_refused() -> None:
    Counting().progress(1, 2, "fine")
    report_progress(3)
    assert not Counting().cancelled
    Counting().check_cancelled()
    with pytest.raises(ConfigurationError, match="progress done must be a finite number"):
        Counting().progress("1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="progress total"):
        report_progress(1, float("nan"))
    with pytest.raises(ConfigurationError, match="progress note must be a str"):
        report_progress(1, 2, 3)  # type: ignore[arg-type]


class Reporter(Job):
    job_name = "tests.progress.reporter"

    def handle(self, payload: Any) -> int:
        for n in range(payload):
            self.progress(n, payload)
        return payload


def test_reports_in_a_tight_loop_are_coalesced_into_a_few_writes(app: JobsApp) -> None:
    from jobs_core.drivers.memory import MemoryDriver

    driver = app.driver
    assert isinstance(driver, MemoryDriver)
    writes: list[float] = []
    save = driver.save_progress

    def counting_save(*args: Any) -> None:
        writes.append(time.monotonic())
        save(*args)

    driver.save_progress = counting_save  # type: ignore[method-assign]
    app.register(Reporter)
    ident = app.dispatch(Reporter, 300_000)
    assert ident is not None
    started = time.monotonic()
    assert app.work("default") == 1
    elapsed = time.monotonic() - started
    assert app.result(ident) == 300_000
    # One write per PROGRESS_INTERVAL (0.5 s) at most, whatever the number of reports.
    assert len(writes) <= elapsed / 0.5 + 2, (len(writes), elapsed)


class Quick(Job):
    job_name = "tests.progress.quick"

    async def handle(self, payload: Any) -> int:
        RUNS[payload] = RUNS.get(payload, 0) + 1
        await asyncio.sleep(0.005)
        return int(payload.rsplit("-", 1)[1])


def test_cancelling_one_async_job_leaves_the_jobs_run_after_it_alone(app: JobsApp) -> None:
    """An async worker runs its jobs one after another in a few lanes: the lane
    whose job was cancelled runs the next jobs, and none of them is cancelled."""
    app.register(Quick)
    key = uuid.uuid4().hex
    STARTED[key] = threading.Event()
    sleepy = app.dispatch(Sleepy, key)
    quick = [f"{key}-{i}" for i in range(300)]
    ids = app.dispatch_many(Quick, quick)
    assert sleepy is not None
    _, thread = _start(app, concurrency=2)
    assert STARTED[key].wait(WAIT)
    assert app.cancel(sleepy) == "requested"
    thread.join(WAIT)
    assert not thread.is_alive()
    assert app.status(sleepy).state == "cancelled"
    assert [app.result(ident) for ident in ids] == list(range(300))
    assert all(RUNS[payload] == 1 for payload in quick)
