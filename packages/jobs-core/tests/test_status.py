"""Status and results by id: ``Jobs.status``, ``Jobs.result``, the CLI, and unknown ids."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from jobs_core import Job, JobsApp
from jobs_core.cli import cli
from jobs_core.errors import ConfigurationError, JobFailed, JobNotFound, ResultTimeout


class Add(Job):
    job_name = "tests.status.add"

    def handle(self, payload: Any) -> Any:
        return {"sum": payload["a"] + payload["b"], "html": "<b>x</b>"}


class Boom(Job):
    job_name = "tests.status.boom"
    max_retries = 0

    def handle(self, payload: Any) -> None:
        raise ValueError("boom")


class Opaque(Job):
    job_name = "tests.status.opaque"

    def handle(self, payload: Any) -> object:
        return object()


@pytest.fixture
def app() -> Iterator[JobsApp]:
    url = f"memory://status-{uuid.uuid4().hex}"
    with JobsApp(url, load_plugins=False) as application:
        for cls in (Add, Boom, Opaque):
            application.register(cls)
        yield application


def test_a_job_is_queued_then_succeeded_with_its_return_value(app: JobsApp) -> None:
    ident = app.dispatch(Add, {"a": 1, "b": 2})
    assert ident is not None
    queued = app.status(ident)
    assert (queued.state, queued.name, queued.queue, queued.finished) == (
        "queued",
        Add.job_name,
        "default",
        False,
    )
    app.work("default")
    done = app.status(ident)
    assert done.state == "succeeded" and done.finished and done.attempts == 1
    assert done.result == {"sum": 3, "html": "<b>x</b>"}
    assert app.result(ident, timeout=0) == {"sum": 3, "html": "<b>x</b>"}


def test_a_delayed_job_is_delayed_and_result_times_out(app: JobsApp) -> None:
    ident = app.dispatch(Add, {"a": 1, "b": 2}, delay=60)
    assert ident is not None
    assert app.status(ident).state == "delayed"
    with pytest.raises(ResultTimeout, match="still delayed"):
        app.result(ident, timeout=0.1)


def test_a_failed_job_raises_job_failed_with_its_error(app: JobsApp) -> None:
    ident = app.dispatch(Boom)
    assert ident is not None
    app.work("default")
    status = app.status(ident)
    assert status.state == "failed" and status.error is not None and "ValueError: boom" in status.error
    with pytest.raises(JobFailed, match="ValueError: boom"):
        app.result(ident)


def test_a_return_value_json_cannot_hold_is_kept_as_none(app: JobsApp) -> None:
    ident = app.dispatch(Opaque)
    assert ident is not None
    app.work("default")
    assert app.status(ident).state == "succeeded"
    assert app.result(ident) is None


def test_an_unknown_id_raises_job_not_found(app: JobsApp) -> None:
    with pytest.raises(JobNotFound, match="no job with id 'nope'"):
        app.status("nope")
    with pytest.raises(JobNotFound):
        app.result("nope", timeout=1)
    with pytest.raises(JobNotFound):
        app.cancel("nope")
    with pytest.raises(ConfigurationError, match="non-empty str"):
        app.status(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        app.result("x", timeout=-1)


def test_results_ttl_zero_keeps_no_results() -> None:
    with JobsApp(f"memory://status-{uuid.uuid4().hex}?results_ttl=0", load_plugins=False) as app:
        app.register(Add)
        ident = app.dispatch(Add, {"a": 1, "b": 2})
        assert ident is not None
        app.work("default")
        with pytest.raises(JobNotFound, match="results_ttl is 0"):
            app.status(ident)
    with pytest.raises(ConfigurationError, match="results_ttl"):
        _ = JobsApp("memory://?results_ttl=-1", load_plugins=False).driver


def test_the_async_variants(app: JobsApp) -> None:
    ident = app.dispatch(Add, {"a": 2, "b": 2})
    assert ident is not None
    app.work("default")

    async def main() -> tuple[str, Any]:
        status = await app.astatus(ident)
        return status.state, await app.aresult(ident, timeout=1)

    assert asyncio.run(main()) == ("succeeded", {"sum": 4, "html": "<b>x</b>"})


def test_the_cli_shows_status_result_and_cancel(app: JobsApp) -> None:
    url = app.driver.url
    assert url is not None
    runner = CliRunner()
    done = app.dispatch(Add, {"a": 1, "b": 2})
    waiting = app.dispatch(Add, {"a": 5, "b": 5}, queue="later", delay=60)
    assert done is not None and waiting is not None
    app.work("default")
    shown = runner.invoke(cli, ["status", done, "--url", url])
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.output and '"sum": 3' in shown.output
    as_json = runner.invoke(cli, ["status", done, "--url", url, "--json"])
    assert json.loads(as_json.output)["result"] == {"sum": 3, "html": "<b>x</b>"}
    result = runner.invoke(cli, ["result", done, "--url", url])
    assert json.loads(result.output) == {"sum": 3, "html": "<b>x</b>"}
    assert "delayed" in runner.invoke(cli, ["status", waiting, "--url", url]).output
    cancelled = runner.invoke(cli, ["cancel", waiting, "--url", url, "--json"])
    assert json.loads(cancelled.output) == {"id": waiting, "outcome": "removed"}
    after = runner.invoke(cli, ["result", waiting, "--url", url])
    assert after.exit_code == 1 and "cancelled" in after.output


@pytest.mark.parametrize("command", ["status", "result", "cancel"])
def test_the_cli_reports_an_unknown_id_in_one_line(app: JobsApp, command: str) -> None:
    url = app.driver.url
    assert url is not None
    outcome = CliRunner().invoke(cli, [command, "no-such-job", "--url", url])
    assert outcome.exit_code == 1
    assert outcome.output.strip() == "jobs: error: no job with id 'no-such-job'"
    assert "Traceback" not in outcome.output


def test_a_queued_jobs_state_follows_its_lease_and_due_time() -> None:
    from jobs_core.status import DELAYED, QUEUED, RUNNING, live_state

    now = 1_000.0
    assert live_state(True, now + 5, now - 10, now) == RUNNING
    assert live_state(True, now - 1, now - 10, now) == QUEUED  # the lease ended: about to be taken again
    assert live_state(False, None, now, now) == QUEUED
    assert live_state(False, None, now + 1, now) == DELAYED


def test_a_live_status_reads_name_and_attempts_from_the_body_and_shows_the_worker_only_while_running() -> (
    None
):
    from jobs_core.message import Message
    from jobs_core.status import QUEUED, RUNNING, live_status

    body = Message(name="mail.send", queue="q", payload={}, attempts=2).encode()
    running = live_status(
        "a" * 32, "q", body, reserved=True, available_at=1.0, lease_expires_at=20.0, now=10.0, worker="h:1"
    )
    assert (running.state, running.name, running.attempts, running.worker) == (RUNNING, "mail.send", 2, "h:1")
    assert running.lease_expires_at == 20.0
    ended = live_status(
        "a" * 32,
        "q",
        b"not json",
        reserved=True,
        available_at=1.0,
        lease_expires_at=5.0,
        now=10.0,
        worker="h:1",
    )
    assert (ended.state, ended.name, ended.attempts, ended.worker, ended.lease_expires_at) == (
        QUEUED,
        "",
        0,
        None,
        None,
    )
