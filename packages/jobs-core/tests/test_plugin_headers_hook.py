"""The ``jobs_message_headers`` and ``jobs_worker_started`` hooks: what plugins see and change."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Job, JobsApp, current_job, hookimpl
from jobs_core.driver import Driver
from jobs_core.message import Message
from jobs_core.worker import Worker

seen_headers: list[dict[str, str]] = []


class Echo(Job):
    def handle(self, payload: Any) -> Any:
        seen_headers.append(dict(current_job().headers))


class Stamp:
    """Adds a header naming the job and the driver."""

    @hookimpl
    def jobs_message_headers(self, message: Message, driver: Driver) -> dict[str, str]:
        return {"stamp": f"{message.name}@{driver.name}", "mine": "plugin"}


@pytest.fixture
def app() -> Iterator[JobsApp]:
    seen_headers.clear()
    with JobsApp("memory://", load_plugins=False) as app:
        yield app


def test_added_headers_reach_the_worker_and_the_message_own_headers_win(app: JobsApp) -> None:
    app.register_plugin(Stamp())
    own = app.message_for(Echo, None).replace(headers={"mine": "caller"})
    app.queue.enqueue([own])
    app.dispatch_many(Echo, [1, 2])
    assert app.work() == 3
    name = app.message_for(Echo).name
    assert seen_headers == [
        {"stamp": f"{name}@memory", "mine": "caller"},
        {"stamp": f"{name}@memory", "mine": "plugin"},
        {"stamp": f"{name}@memory", "mine": "plugin"},
    ]


def test_a_broken_implementation_is_logged_and_the_job_is_stored(
    app: JobsApp, caplog: pytest.LogCaptureFixture
) -> None:
    class Raises:
        @hookimpl
        def jobs_message_headers(self, message: Message) -> dict[str, str]:
            raise RuntimeError("tracer down")

    class NotStrings:
        @hookimpl
        def jobs_message_headers(self, message: Message) -> Any:
            return {"n": 1}

    app.register_plugin(Raises())
    app.register_plugin(NotStrings())
    app.register_plugin(Stamp())
    with caplog.at_level(logging.ERROR):
        assert app.dispatch(Echo, None) is not None
    assert "tracer down" in caplog.text
    assert "not a mapping of strings to strings" in caplog.text
    assert app.work() == 1
    assert seen_headers == [{"stamp": f"{app.message_for(Echo).name}@memory", "mine": "plugin"}]


def test_without_implementations_messages_are_stored_as_built(app: JobsApp) -> None:
    app.dispatch(Echo, None)
    assert app.work() == 1
    assert seen_headers == [{}]


def test_worker_started_is_called_once_per_run_with_the_worker(app: JobsApp) -> None:
    started: list[tuple[Worker, list[str]]] = []

    class Watch:
        @hookimpl
        def jobs_worker_started(self, worker: Worker) -> None:
            started.append((worker, list(worker.queues)))

        @hookimpl
        def jobs_job_processing(self, message: Message) -> None:
            assert len(started) == 1  # before the first job

    class Broken:
        @hookimpl
        def jobs_worker_started(self, worker: Worker) -> None:
            raise RuntimeError("cannot bind")

    app.register_plugin(Broken())
    app.register_plugin(Watch())
    app.dispatch(Echo, None, queue="mail")
    assert app.work("mail") == 1
    assert len(started) == 1
    assert started[0][0].app is app and started[0][1] == ["mail"]
