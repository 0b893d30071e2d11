"""Middleware: hook wrappers around job execution."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from jobs_core import Job, JobRun, JobsApp, LoggingMiddleware, Retry, SkipJob, hookimpl

RESULTS: list[Any] = []


class Record(Job):
    def handle(self, payload: Any) -> Any:
        RESULTS.append(payload)
        return payload


class AsyncRecord(Job):
    async def handle(self, payload: Any) -> Any:
        RESULTS.append(payload)
        return payload


class Fails(Job):
    max_retries = 0

    def handle(self, payload: Any) -> None:
        raise KeyError("missing")


@pytest.fixture(autouse=True)
def clean() -> None:
    RESULTS.clear()


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp("memory://") as app:
        yield app


class Tagging:
    """Changes the payload before the run and the result after it."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    @hookimpl(wrapper=True)
    def jobs_run_job(self, run: JobRun) -> Generator[None, Any, Any]:
        run.payload = {"wrapped": run.payload, "attempt": run.attempt}
        result = yield
        self.results.append(result)
        return result


def test_middleware_wraps_execution_and_can_alter_the_payload(app: JobsApp) -> None:
    tagging = Tagging()
    app.register_plugin(tagging)
    processed: list[Any] = []
    app.listen("job.processed", lambda e: processed.append(e.result))
    app.dispatch(Record, 1)
    app.dispatch(AsyncRecord, 2)
    app.dispatch(Record().timeout(5), 3)
    assert app.work() == 3
    expected = [{"wrapped": n, "attempt": 1} for n in (1, 2)]
    assert expected == RESULTS  # the timed job ran in a child process
    assert tagging.results == [*expected, {"wrapped": 3, "attempt": 1}]
    assert processed == tagging.results


def test_middleware_can_skip_and_retry(app: JobsApp) -> None:
    class Gate:
        @hookimpl(wrapper=True)
        def jobs_run_job(self, run: JobRun) -> Generator[None, Any, Any]:
            if run.payload == "skip":
                raise SkipJob("skipped by middleware")
            if run.payload == "later" and run.attempt == 1:
                raise Retry(0, "try again")
            return (yield)

    app.register_plugin(Gate())
    app.dispatch(Record, "skip")
    app.dispatch(Record, "later")
    assert app.work() == 3
    assert RESULTS == ["later"]
    assert app.stats()["completed"] == 2


def test_middleware_with_concurrency_wraps_async_jobs_too(app: JobsApp) -> None:
    tagging = Tagging()
    app.register_plugin(tagging)
    app.dispatch_many(AsyncRecord, [1, 2, 3])
    worker = app.worker(concurrency=3, stop_when_empty=True, install_signal_handlers=False)
    assert worker.run() == 3
    assert sorted(r["wrapped"] for r in tagging.results) == [1, 2, 3]


def test_logging_middleware_logs_success_and_failure(app: JobsApp, caplog: pytest.LogCaptureFixture) -> None:
    app.register_plugin(LoggingMiddleware())
    app.dispatch(Record, 1)
    app.dispatch(Fails, None)
    with caplog.at_level(logging.DEBUG, logger="jobs_core.middleware"):
        assert app.work() == 2
    text = caplog.text
    assert f"job {Record.job_name}" in text and "done in" in text
    assert f"job {Fails.job_name}" in text and "failed after" in text and "KeyError" in text


class FailsTwice(Job):
    max_retries = 1
    retry_delay = 0.0
    jitter = False

    def handle(self, payload: Any) -> None:
        raise KeyError("missing")


def test_with_logging_middleware_each_failure_is_logged_once(
    app: JobsApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.register_plugin(LoggingMiddleware())
    ident = app.dispatch(FailsTwice, None)
    with caplog.at_level(logging.INFO, logger="jobs_core"):
        assert app.work() == 2  # the first attempt is retried at once; the second fails for good
    about_it = [r for r in caplog.records if ident in r.getMessage()]
    assert [(r.levelname, r.name) for r in about_it] == [
        ("INFO", "jobs_core.worker"),
        ("WARNING", "jobs_core.worker"),
    ], [r.getMessage() for r in about_it]
    assert "retrying" in about_it[0].getMessage() and "failed for good" in about_it[1].getMessage()


def test_unregistering_middleware_restores_the_direct_path(app: JobsApp) -> None:
    tagging = Tagging()
    app.register_plugin(tagging)
    app.unregister_plugin(tagging)
    app.dispatch(Record, 1)
    app.work()
    assert RESULTS == [1]
    assert tagging.results == []
