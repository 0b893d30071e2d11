"""Events: listen(), plugins implementing the event hooks, and error isolation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Job, JobEvent, JobsApp, hookimpl
from jobs_core.errors import ConfigurationError
from jobs_core.message import Message


class Ok(Job):
    def handle(self, payload: Any) -> Any:
        return {"double": payload * 2}


class Boom(Job):
    max_retries = 1
    retry_delay = 0.0

    def handle(self, payload: Any) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp("memory://") as app:
        yield app


def test_processed_is_called_once_per_processed_job(app: JobsApp) -> None:
    seen: list[JobEvent] = []
    app.listen("job.processed", seen.append)
    ids = app.dispatch_many(Ok, [1, 2, 3])
    assert app.work() == 3
    assert [e.job_id for e in seen] == ids
    assert [e.result for e in seen] == [{"double": 2}, {"double": 4}, {"double": 6}]
    assert all(e.event == "job.processed" and e.duration is not None and e.duration >= 0 for e in seen)


def test_every_event_of_a_failing_job_in_order(app: JobsApp) -> None:
    seen: list[tuple[str, Any]] = []
    for event in ("job.queued", "job.processing", "job.processed", "job.failed", "job.retrying", "job.dead"):
        app.listen(event, lambda e: seen.append((e.event, e.will_retry)))
    app.dispatch(Boom, None)
    app.work()
    assert seen == [
        ("job.queued", None),
        ("job.processing", None),
        ("job.failed", True),
        ("job.retrying", None),
        ("job.processing", None),
        ("job.failed", False),
        ("job.dead", None),
    ]


def test_dead_carries_the_error_and_an_unknown_job_its_reason(app: JobsApp) -> None:
    dead: list[JobEvent] = []
    app.listen("job.dead", dead.append)
    app.dispatch(Boom().retries(0), None)
    app.driver.enqueue([Ok().to_message(1).replace(name="not.Registered")])
    app.work()
    errors = {e.job_name: e.error for e in dead}
    assert isinstance(errors[Boom.job_name], RuntimeError)
    assert "not registered" in str(errors["not.Registered"])


def test_queued_fires_only_for_stored_jobs(app: JobsApp) -> None:
    queued: list[str] = []
    app.listen("job.queued", lambda e: queued.append(e.job_id))
    first = app.dispatch(Ok().unique("same"), 1)
    assert app.dispatch(Ok().unique("same"), 2) is None
    assert queued == [first]


def test_an_unknown_event_name_lists_the_valid_ones(app: JobsApp) -> None:
    with pytest.raises(ConfigurationError) as info:
        app.listen("job.done", print)
    message = str(info.value)
    assert "unknown event 'job.done'" in message
    for name in ("job.queued", "job.processing", "job.processed", "job.failed", "job.retrying", "job.dead"):
        assert name in message


def test_a_raising_callback_is_logged_and_does_not_affect_the_job(
    app: JobsApp, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[str] = []

    def broken(event: JobEvent) -> None:
        raise ValueError("listener bug")

    app.listen("job.processed", broken)
    app.listen("job.processed", lambda e: after.append(e.job_id))
    app.dispatch(Ok, 1)
    with caplog.at_level(logging.ERROR, logger="jobs_core.events"):
        assert app.work() == 1
    assert app.stats()["completed"] == 1
    assert app.stats()["failed"] == 0
    assert len(after) == 1
    assert "listener bug" in caplog.text


def test_a_plugin_implementing_an_event_hook_is_called_and_isolated(app: JobsApp) -> None:
    calls: list[str] = []

    class Metrics:
        @hookimpl
        def jobs_job_processed(self, message: Message, duration: float) -> None:
            calls.append(message.name)

    class Broken:
        @hookimpl
        def jobs_job_processed(self, message: Message) -> None:
            raise RuntimeError("plugin bug")

    app.register_plugin(Metrics())
    app.register_plugin(Broken())
    app.dispatch(Ok, 1)
    assert app.work() == 1
    assert calls == [Ok.job_name]
    assert app.stats()["completed"] == 1


def test_unlisten_removes_a_callback(app: JobsApp) -> None:
    seen: list[str] = []
    callback = seen.append
    app.listen("job.processed", callback)  # type: ignore[arg-type]
    assert app.events.unlisten("job.processed", callback) is True  # type: ignore[arg-type]
    assert app.events.unlisten("job.processed", callback) is False  # type: ignore[arg-type]
    app.dispatch(Ok, 1)
    app.work()
    assert seen == []
