"""The workflow layer through the facade: chains, batches, dependencies, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Job, Jobs, JobsApp, job
from jobs_core.errors import UnsupportedOperation, WorkflowError, WorkflowNotFound
from jobs_core.facade import set_default_app
from jobs_core.workflows import previous_result

ran: list[tuple[str, Any]] = []


@job(name="wf.add")
def add(payload: dict[str, int]) -> int:
    total = int(previous_result(0)) + payload["n"]
    ran.append(("add", total))
    return total


@job(name="wf.note")
def note(payload: Any) -> None:
    ran.append(("note", payload))


@job(name="wf.boom", max_retries=0)
def boom(payload: Any) -> None:
    ran.append(("boom", payload))
    raise RuntimeError("boom")


flaky_fails = [True]


@job(name="wf.flaky", max_retries=0)
def flaky(payload: Any) -> None:
    if flaky_fails[0]:
        raise RuntimeError("flaky")
    ran.append(("fixed", payload))


@job(name="wf.spawn")
def spawn(payload: Any) -> None:
    ran.append(("spawn", payload))
    Jobs.add_to_batch([(note, "added 1"), (note, "added 2")])


@job(name="wf.unjson")
def unjson(payload: Any) -> object:
    return {1, 2}


class Plain(Job):
    def handle(self, payload: Any) -> None:
        ran.append(("plain", payload))


@pytest.fixture(autouse=True)
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobsApp]:
    monkeypatch.delenv("JOBS_URL", raising=False)
    ran.clear()
    app = JobsApp("memory://")
    previous = set_default_app(app)
    yield app
    app.close()
    set_default_app(previous)


def test_a_chain_runs_its_links_in_order_passing_each_result_on(app: JobsApp) -> None:
    chain_id = Jobs.chain([(add, {"n": 1}), (add, {"n": 10}), (add, {"n": 100})]).dispatch()
    assert Jobs.chain_status(chain_id).pending == 3
    app.work("default", max_jobs=10)
    assert ran == [("add", 1), ("add", 11), ("add", 111)]
    status = Jobs.chain_status(chain_id)
    assert (status.status, status.succeeded, status.finished, status.position) == ("succeeded", 3, True, 3)


def test_a_failed_link_stops_the_chain_and_retry_resumes_it(app: JobsApp) -> None:
    flaky_fails[0] = True
    chain_id = Jobs.chain([(note, 1), (note, 2), (flaky, 3), (note, 4), (note, 5)]).dispatch()
    app.work("default", max_jobs=10)
    assert ran == [("note", 1), ("note", 2)]
    status = Jobs.chain_status(chain_id)
    assert (status.status, status.position, status.failed, status.pending) == ("failed", 2, 1, 2)
    (failed_id,) = status.failed_ids
    flaky_fails[0] = False
    assert Jobs.retry(failed_id)
    app.work("default", max_jobs=10)
    assert ran[2:] == [("fixed", 3), ("note", 4), ("note", 5)]
    assert Jobs.chain_status(chain_id).status == "succeeded"


def test_a_link_returning_non_json_fails_with_a_clear_error(app: JobsApp) -> None:
    chain_id = Jobs.chain([unjson.retries(0), (note, "never")]).dispatch()
    app.work("default", max_jobs=5)
    assert ("note", "never") not in ran
    (failed,) = app.failed_jobs()
    assert "cannot be passed to the next link" in failed.error
    assert Jobs.chain_status(chain_id).status == "failed"


def test_a_batch_runs_then_and_finally_once_with_the_batch_id(app: JobsApp) -> None:
    batch_id = (
        Jobs.batch([(note, n) for n in range(4)])
        .then(note, {"cb": "then"})
        .catch(note, {"cb": "catch"})
        .finally_(note, {"cb": "finally"})
        .dispatch()
    )
    app.work("default", max_jobs=20)
    callbacks = [p for name, p in ran if name == "note" and isinstance(p, dict)]
    assert callbacks == [{"cb": "then", "batch_id": batch_id}, {"cb": "finally", "batch_id": batch_id}]
    status = Jobs.batch_status(batch_id)
    assert (status.total, status.pending, status.succeeded, status.failed, status.finished) == (
        4,
        0,
        4,
        0,
        True,
    )


def test_catch_runs_at_the_first_failure(app: JobsApp) -> None:
    batch_id = (
        Jobs.batch([(boom, 0), (note, 1)]).catch(note, {"cb": "catch"}).then(note, {"cb": "then"}).dispatch()
    )
    app.work("default", max_jobs=10)
    assert [p["cb"] for name, p in ran if name == "note" and isinstance(p, dict)] == ["catch"]
    status = Jobs.batch_status(batch_id)
    assert (status.failed, status.succeeded, len(status.failed_ids)) == (1, 1, 1)


def test_jobs_added_from_inside_a_batch_job_are_part_of_it(app: JobsApp) -> None:
    batch_id = Jobs.batch([(spawn, "first")]).then(note, {"cb": "then"}).dispatch()
    app.work("default", max_jobs=10)
    assert ran == [
        ("spawn", "first"),
        ("note", "added 1"),
        ("note", "added 2"),
        ("note", {"cb": "then", "batch_id": batch_id}),
    ]
    assert Jobs.batch_status(batch_id).total == 3


def test_cancel_batch_keeps_its_waiting_jobs_from_running(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, n) for n in range(3)]).then(note, {"cb": "then"}).finally_(note).dispatch()
    assert Jobs.cancel_batch(batch_id)
    assert not Jobs.cancel_batch(batch_id)
    app.work("default", max_jobs=10)
    assert ran == [("note", {"batch_id": batch_id})]
    status = Jobs.batch_status(batch_id)
    assert (status.status, status.cancelled, status.finished) == ("cancelled", 3, True)


def _waiting_ids(app: JobsApp, count: int) -> list[str]:
    """Ids of the ``count`` jobs waiting on ``default`` (reserved, then put back unchanged)."""
    got = app.driver.reserve(["default"], limit=count, lease=60.0, timeout=1.0)
    for delivery in got:
        app.driver.release(delivery)
    return [d.id for d in got]


def test_cancelling_one_job_of_a_batch_runs_catch_and_finally_once(app: JobsApp) -> None:
    batch_id = (
        Jobs.batch([(note, n) for n in range(3)])
        .then(note, {"cb": "then"})
        .catch(note, {"cb": "catch"})
        .finally_(note, {"cb": "finally"})
        .dispatch()
    )
    assert Jobs.cancel(_waiting_ids(app, 3)[1]) == "removed"
    app.work("default", max_jobs=10)
    callbacks = [p["cb"] for name, p in ran if name == "note" and isinstance(p, dict)]
    assert callbacks == ["catch", "finally"]
    status = Jobs.batch_status(batch_id)
    assert (status.status, status.succeeded, status.cancelled, status.finished) == ("failed", 2, 1, True)


def test_cancelling_a_waiting_link_stops_the_chain(app: JobsApp) -> None:
    chain_id = Jobs.chain([(add, {"n": 1}), (add, {"n": 10})]).dispatch()
    app.work("default", max_jobs=1)
    assert Jobs.cancel(_waiting_ids(app, 1)[0]) == "removed"
    app.work("default", max_jobs=10)
    assert ran == [("add", 1)]
    status = Jobs.chain_status(chain_id)
    assert (status.status, status.cancelled, status.finished) == ("cancelled", 1, True)


def test_dispatch_after_waits_for_a_batch_and_a_chain(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, "b")]).dispatch()
    chain_id = Jobs.chain([(note, "c1"), (note, "c2")]).dispatch()
    job_id = Jobs.dispatch(note, "last", after=[batch_id, chain_id])
    follower = Jobs.dispatch(Plain, "after the job", after=[job_id])
    app.work("default", max_jobs=10)
    assert ran[-2:] == [("note", "last"), ("plain", "after the job")]
    assert follower is not None


def test_dispatch_after_waits_for_plainly_dispatched_jobs(app: JobsApp) -> None:
    first = Jobs.dispatch(note, "first")
    second = Jobs.dispatch(Plain, "second")
    assert first is not None and second is not None
    Jobs.dispatch(note, "after both", after=[first, second])
    app.work("default", max_jobs=2)
    assert ran == [("note", "first"), ("plain", "second")]
    app.work("default", max_jobs=1)
    assert ran[-1] == ("note", "after both")


def test_dispatch_after_a_failed_job_fails_at_once_and_after_a_succeeded_one_runs(app: JobsApp) -> None:
    failing = Jobs.dispatch(boom, "x")
    done = Jobs.dispatch(note, "done")
    assert failing is not None and done is not None
    app.work("default", max_jobs=2)
    doomed = Jobs.dispatch(note, "never", after=[failing])
    assert Jobs.status(doomed).state == "failed"
    assert f"dependency job {failing} failed" in str(Jobs.status(doomed).error)
    Jobs.dispatch(note, "runs", after=[done])
    app.work("default", max_jobs=5)
    assert ("note", "runs") in ran and ("note", "never") not in ran


def test_cancel_chain_runs_no_further_link(app: JobsApp) -> None:
    chain_id = Jobs.chain([(add, {"n": 1}), (add, {"n": 10}), (add, {"n": 100})]).dispatch()
    app.work("default", max_jobs=1)
    assert Jobs.cancel_chain(chain_id)
    assert not Jobs.cancel_chain(chain_id)
    app.work("default", max_jobs=10)
    assert ran == [("add", 1)]
    status = Jobs.chain_status(chain_id)
    assert (status.status, status.succeeded, status.cancelled, status.finished) == ("cancelled", 1, 2, True)
    with pytest.raises(WorkflowError, match="not a chain"):
        Jobs.cancel_chain(Jobs.batch([note]).dispatch())


def test_cancel_of_a_job_still_waiting_for_its_dependencies(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, "b")]).dispatch()
    waiting = Jobs.dispatch(note, "never", after=[batch_id])
    follower = Jobs.dispatch(note, "never either", after=[waiting])
    assert Jobs.cancel(waiting) == "removed"
    app.work("default", max_jobs=10)
    assert ran == [("note", "b")]
    assert Jobs.status(follower).state == "failed"
    assert "cancelled" in str(Jobs.status(follower).error)


def test_status_of_a_job_waiting_for_its_dependencies_is_waiting_then_queued(app: JobsApp) -> None:
    batch_id = Jobs.batch([(note, "b")]).dispatch()
    waiting = Jobs.dispatch(note, {"n": 1}, after=[batch_id])
    cancelled = Jobs.dispatch(note, "never", after=[batch_id])
    status = Jobs.status(waiting)
    assert (status.state, status.name, status.payload, status.finished) == (
        "waiting",
        "wf.note",
        {"n": 1},
        False,
    )
    assert Jobs.cancel(cancelled) == "removed"
    assert (Jobs.status(cancelled).state, Jobs.status(cancelled).finished) == ("cancelled", True)
    app.work("default", max_jobs=1)
    assert Jobs.status(waiting).state == "queued"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Jobs.chain([]).dispatch(), "zero jobs"),
        (lambda: Jobs.batch([]).dispatch(), "zero jobs"),
        (lambda: Jobs.chain([(note, 1), "wf.no-such-job"]).dispatch(), "unknown job 'wf.no-such-job'"),
        (lambda: Jobs.chain([(note, 1), 42]).dispatch(), "42 is not a job"),
        (lambda: Jobs.chain([(note, 1, 2)]).dispatch(), "3-tuple"),
        (lambda: Jobs.batch([(note, {1, 2})]).dispatch(), "JSON"),
        (lambda: Jobs.batch([note]).then(note, "not a dict").dispatch(), "must be a dict"),
        (lambda: Jobs.dispatch(note, None, after="abc"), "list of ids"),
        (lambda: Jobs.dispatch(note, None, after=["no-such-id"]), "no-such-id"),
        (lambda: Jobs.add_to_batch([note]), "inside a job of a batch"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(app: JobsApp, build: Any, match: str) -> None:
    with pytest.raises(Exception, match=match) as caught:
        build()
    assert isinstance(caught.value, (WorkflowError, TypeError, ValueError))
    assert app.driver.workflows() == []
    assert app.stats()["pending"] == 0


def test_a_job_waiting_for_itself_is_a_cycle(app: JobsApp) -> None:
    message = app.message_for(note, None)
    from jobs_core.workflows import dispatch_after

    with pytest.raises(WorkflowError, match="cycle"):
        dispatch_after(app, message, [message.id])
    with pytest.raises(WorkflowNotFound):
        Jobs.batch_status(message.id)


def test_a_driver_without_the_capability_raises_unsupported_operation() -> None:
    other = JobsApp("example://")
    try:
        from jobs_core.workflows import Batch, Chain

        with pytest.raises(UnsupportedOperation, match="workflows"):
            Batch(other, [note]).dispatch()
        with pytest.raises(UnsupportedOperation, match="workflows"):
            Chain(other, [note]).dispatch()
        with pytest.raises(UnsupportedOperation, match="workflows"):
            other.dispatch(note, None, after=[])
    finally:
        other.close()


def test_the_cli_lists_batches_and_shows_one_with_a_progress_bar() -> None:
    import json

    from click.testing import CliRunner
    from jobs_core.cli import cli

    url = "memory://workflows-cli"
    app = JobsApp(url)
    try:
        from jobs_core.workflows import Batch

        batch_id = Batch(app, [(note, n) for n in range(4)]).dispatch()
        app.work("default", max_jobs=1)
        runner = CliRunner()
        listed = runner.invoke(cli, ["batches", "--url", url])
        assert listed.exit_code == 0, listed.output
        assert batch_id in listed.output
        assert "[######------------------] 1/4" in listed.output
        shown = runner.invoke(cli, ["batch", batch_id, "--url", url, "--json"])
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.output)
        assert (data["total"], data["succeeded"], data["pending"], data["finished"]) == (4, 1, 3, False)
        human = runner.invoke(cli, ["batch", batch_id, "--url", url])
        assert "total 4  pending 3  succeeded 1  failed 0" in human.output
        missing = runner.invoke(cli, ["batch", "no-such-batch", "--url", url])
        assert missing.exit_code == 2
        assert "no batch with id 'no-such-batch'" in missing.output
    finally:
        app.close()


@job(name="wf.async_add")
async def async_add(payload: dict[str, int]) -> int:
    total = int(previous_result(0)) + payload["n"]
    ran.append(("async_add", total))
    return total


@job(name="wf.async_unjson", max_retries=0)
async def async_unjson(payload: Any) -> object:
    return {1, 2}


def test_async_links_on_a_pooled_worker_pass_their_results_on(app: JobsApp) -> None:
    chain_id = Jobs.chain([(async_add, {"n": 1}), (async_add, {"n": 2}), (add, {"n": 3})]).dispatch()
    bad_id = Jobs.chain([async_unjson, (note, "never")]).dispatch()
    app.worker("default", concurrency=4, stop_when_empty=True, install_signal_handlers=False).run()
    sums = [r for r in ran if r[0] in ("async_add", "add")]
    assert sums == [("async_add", 1), ("async_add", 3), ("add", 6)]
    assert Jobs.chain_status(chain_id).status == "succeeded"
    assert Jobs.chain_status(bad_id).status == "failed"
    assert ("note", "never") not in ran
    assert "cannot be passed to the next link" in app.failed_jobs()[0].error
