"""A job learns its own id and attempt: ``self.job_id``, ``self.attempt``, ``current_job()``.

The user's case: a job passes its id to an email provider as the idempotency
key, so a redelivered or retried job is not sent twice. The id must be the
one dispatch returned, the same on every attempt, on every way a worker runs
a job: inline, in threads, on the event loop, in a forked child (a sync job
with a timeout), under middleware.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from jobs_core import Job, JobContext, JobsApp, LoggingMiddleware, current_job, job
from jobs_core.errors import NoCurrentJob

SENT: list[tuple[str, int]] = []
LOCK = threading.Lock()


def send_email(key: str, attempt: int) -> None:
    with LOCK:
        SENT.append((key, attempt))


class SendReceipt(Job):
    max_retries = 2
    retry_delay = 0.0
    jitter = False

    def handle(self, payload: dict[str, Any]) -> None:
        send_email(self.job_id, self.attempt)
        if self.attempt < payload["succeed_on"]:
            raise ConnectionError("provider timed out")


class AsyncReceipt(Job):
    max_retries = 2
    retry_delay = 0.0
    jitter = False

    async def handle(self, payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        context = current_job()
        send_email(context.id, context.attempt)
        assert (self.job_id, self.attempt) == (context.id, context.attempt)
        if context.attempt < payload["succeed_on"]:
            raise ConnectionError("provider timed out")


@job(name="context.receipt", max_retries=2, retry_delay=0.0, jitter=False)
def receipt(payload: dict[str, Any]) -> None:
    context = current_job()
    send_email(context.id, context.attempt)
    if context.attempt < payload["succeed_on"]:
        raise ConnectionError("provider timed out")


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        pytest.importorskip("jobs_database")
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return "memory://"


@pytest.fixture(autouse=True)
def clean() -> None:
    SENT.clear()


def run_all(app: JobsApp, concurrency: int) -> None:
    """Run workers until no job waits (retries come back at once: retry_delay 0)."""
    while app.stats()["pending"] or app.stats()["delayed"]:
        worker = app.worker(
            "default", concurrency=concurrency, stop_when_empty=True, install_signal_handlers=False
        )
        worker.run()


@pytest.mark.parametrize("target", [SendReceipt, AsyncReceipt, receipt], ids=["class", "async", "function"])
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("middleware", [False, True], ids=["plain", "middleware"])
def test_every_attempt_sees_the_id_dispatch_returned(
    url: str, target: Any, concurrency: int, middleware: bool
) -> None:
    with JobsApp(url, load_plugins=False) as app:
        if middleware:
            app.register_plugin(LoggingMiddleware())
        ids = [app.dispatch(target, {"succeed_on": n}) for n in (1, 2, 3)]
        run_all(app, concurrency)
        assert app.stats()["completed"] == 3
    expected = sorted(
        (ident, attempt) for ident, n in zip(ids, (1, 2, 3), strict=True) for attempt in range(1, n + 1)
    )
    assert sorted(SENT) == expected


class TimedReceipt(Job):
    """A sync job with a timeout: it runs in a forked child, which writes what it saw."""

    time_limit = 30
    max_retries = 1
    retry_delay = 0.0
    jitter = False

    def handle(self, payload: dict[str, Any]) -> None:
        with open(payload["out"], "a") as out:
            out.write(json.dumps([self.job_id, current_job().attempt]) + "\n")
        if self.attempt == 1:
            raise ConnectionError("provider timed out")


def test_a_job_in_a_child_process_sees_its_id(tmp_path: Path) -> None:
    out = tmp_path / "seen.jsonl"
    with JobsApp("memory://", load_plugins=False) as app:
        ident = app.dispatch(TimedReceipt, {"out": str(out)})
        run_all(app, 1)
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert seen == [[ident, 1], [ident, 2]]


def test_the_context_says_which_job_and_whether_this_is_the_last_attempt() -> None:
    seen: list[JobContext] = []

    @job(name="context.inspect", queue="ctx", max_retries=1, retry_delay=0.0, jitter=False)
    def inspect(payload: None) -> None:
        seen.append(current_job())
        raise ValueError("again")

    with JobsApp("memory://", load_plugins=False) as app:
        ident = app.dispatch(inspect)
        app.work("ctx")
        app.work("ctx")
    assert [(c.id, c.name, c.queue, c.attempt, c.is_last_attempt) for c in seen] == [
        (ident, "context.inspect", "ctx", 1, False),
        (ident, "context.inspect", "ctx", 2, True),
    ]


def test_outside_a_job_there_is_no_current_job() -> None:
    with pytest.raises(NoCurrentJob, match="only known inside a job run by a worker"):
        current_job()
    with pytest.raises(NoCurrentJob, match=r"SendReceipt.job_id and .attempt"):
        _ = SendReceipt().job_id
    with pytest.raises(NoCurrentJob):
        receipt({"succeed_on": 1})  # called directly: no worker, no id
    with JobsApp("memory://", load_plugins=False) as app:
        app.dispatch(SendReceipt, {"succeed_on": 1})
        assert app.work() == 1
    with pytest.raises(NoCurrentJob):  # nothing left behind by the run
        current_job()


def test_a_thread_started_by_the_job_can_use_self_job_id() -> None:
    seen: list[str] = []

    class Threaded(Job):
        def handle(self, payload: None) -> None:
            thread = threading.Thread(target=lambda: seen.append(self.job_id))
            thread.start()
            thread.join()

    with JobsApp("memory://", load_plugins=False) as app:
        ident = app.dispatch(Threaded)
        app.work()
    assert seen == [ident]
