"""Status, results, progress and cancellation (``STATUS``, ``PROGRESS``, ``CANCEL``).

The tests call the driver's operations as a worker and ``Jobs`` call them:
``job_status`` through a job's life, ``ack_results`` keeping the return value,
``save_progress`` while it runs, and ``cancel`` of waiting and running jobs
with ``cancel_requested`` and ``ack_cancelled``.
"""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.status import (
    CANCEL_FINISHED,
    CANCEL_NOT_FOUND,
    CANCEL_REMOVED,
    CANCEL_REQUESTED,
    CANCELLED,
    DELAYED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStatus,
    Progress,
)
from jobs_core.testing.conformance._helpers import (
    JOB_NAME,
    assert_nothing,
    enqueue_one,
    message,
    reserve_one,
    wait_for,
)

status_required = pytest.mark.jobs_requires(Capability.STATUS)
progress_required = pytest.mark.jobs_requires(Capability.STATUS, Capability.PROGRESS)
cancel_required = pytest.mark.jobs_requires(Capability.CANCEL)

UNKNOWN = "0123456789abcdef0123456789abcdef"


def _status(driver: Driver, job_id: str) -> JobStatus:
    found = driver.job_status(job_id)
    assert found is not None, f"job_status({job_id!r}) found nothing"
    return found


def _keeps_results(driver: Driver) -> bool:
    return driver.results_ttl > 0


@status_required
def test_an_unknown_id_has_no_status(jobs_driver: Driver) -> None:
    assert jobs_driver.job_status(UNKNOWN) is None
    assert jobs_driver.job_status("not an id / with <odd> characters") is None


@status_required
def test_a_waiting_job_is_queued_and_a_leased_one_running(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, {"n": 1}))
    queued = _status(jobs_driver, ident)
    assert (queued.state, queued.queue, queued.name, queued.attempts) == (QUEUED, jobs_queue, JOB_NAME, 0)
    assert not queued.finished
    held = reserve_one(jobs_driver, jobs_queue, lease=30.0)
    running = _status(jobs_driver, ident)
    assert running.state == RUNNING
    assert running.lease_expires_at is not None
    assert abs(running.lease_expires_at - held.lease_expires_at) < 1.0


@status_required
def test_a_waiting_running_or_failed_job_reports_its_payload(jobs_driver: Driver, jobs_queue: str) -> None:
    payload = {"args": [2, "é <b>"], "kwargs": {"to": None, "n": [1.5, True]}}
    ident = enqueue_one(jobs_driver, message(jobs_queue, payload, max_retries=0))
    assert _status(jobs_driver, ident).payload == payload
    held = reserve_one(jobs_driver, jobs_queue)
    assert _status(jobs_driver, ident).payload == payload
    if jobs_driver.supports(Capability.FAILED_STORE):
        jobs_driver.fail(held, "ValueError: boom")
        failed = _status(jobs_driver, ident)
        assert (failed.state, failed.payload) == (FAILED, payload)
    else:
        jobs_driver.ack(held)
    none = enqueue_one(jobs_driver, message(jobs_queue))  # a job without a payload
    assert _status(jobs_driver, none).payload is None
    assert _status(jobs_driver, none).to_dict()["payload"] is None


@pytest.mark.jobs_requires(Capability.STATUS, Capability.DELAY)
def test_a_job_due_later_is_delayed(jobs_driver: Driver, jobs_queue: str) -> None:
    due = time.time() + 60
    ident = enqueue_one(jobs_driver, message(jobs_queue, {"later": [1]}, available_at=due))
    delayed = _status(jobs_driver, ident)
    assert delayed.state == DELAYED and delayed.payload == {"later": [1]}
    assert delayed.available_at is not None and abs(delayed.available_at - due) < 1.0


@status_required
def test_ack_results_keeps_the_return_value(jobs_driver: Driver, jobs_queue: str) -> None:
    if not _keeps_results(jobs_driver):
        pytest.skip("results_ttl is 0: this driver keeps no results")
    first = enqueue_one(jobs_driver, message(jobs_queue, {"n": 1}))
    second = enqueue_one(jobs_driver, message(jobs_queue, {"n": 2}))
    a, b = reserve_one(jobs_driver, jobs_queue), reserve_one(jobs_driver, jobs_queue)
    before = time.time()
    jobs_driver.ack_results([a, b], ['{"sum": 3, "text": "é <b>"}', None])
    done = _status(jobs_driver, first)
    assert (done.state, done.result, done.queue, done.name) == (
        SUCCEEDED,
        {"sum": 3, "text": "é <b>"},
        jobs_queue,
        JOB_NAME,
    )
    assert done.finished and done.finished_at is not None and done.finished_at >= before - 1
    assert done.attempts == 1
    other = _status(jobs_driver, second)
    assert (other.state, other.result) == (SUCCEEDED, None)
    assert_nothing(jobs_driver, [jobs_queue])


@status_required
def test_ack_results_of_a_lost_lease_changes_nothing(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue, lease=0.3)
    time.sleep(0.5)
    again = reserve_one(jobs_driver, jobs_queue, lease=30.0)
    jobs_driver.ack_results([held], ['"stale"'])
    assert _status(jobs_driver, ident).state == RUNNING
    jobs_driver.ack_results([again], ['"fresh"'])
    if _keeps_results(jobs_driver):
        assert _status(jobs_driver, ident).result == "fresh"


@pytest.mark.jobs_requires(Capability.STATUS, Capability.FAILED_STORE)
def test_a_failed_job_reports_its_error(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, max_retries=0))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "Traceback ...\nValueError: boom")
    failed = _status(jobs_driver, ident)
    assert failed.state == FAILED
    assert failed.error is not None and "ValueError: boom" in failed.error
    assert failed.finished


@pytest.mark.jobs_requires(Capability.STATUS, Capability.PRUNE)
def test_prune_removes_kept_results(jobs_driver: Driver, jobs_queue: str) -> None:
    if not _keeps_results(jobs_driver):
        pytest.skip("results_ttl is 0: this driver keeps no results")
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    jobs_driver.ack_results([reserve_one(jobs_driver, jobs_queue)], ["1"])
    assert _status(jobs_driver, ident).state == SUCCEEDED
    time.sleep(0.05)
    jobs_driver.prune(0.0)
    assert jobs_driver.job_status(ident) is None


@progress_required
def test_saved_progress_and_worker_show_while_running(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.save_progress(held, None, "host-1:42")
    assert _status(jobs_driver, ident).worker == "host-1:42"
    jobs_driver.save_progress(held, Progress(3, 10, "three <of> ten ✓", time.time()), "host-1:42")
    jobs_driver.save_progress(held, Progress(7, 10, "seven", time.time()), "host-1:42")
    running = _status(jobs_driver, ident)
    assert running.state == RUNNING and running.worker == "host-1:42"
    assert running.progress is not None
    assert (running.progress.done, running.progress.total, running.progress.note) == (7, 10, "seven")
    assert running.progress.fraction == pytest.approx(0.7)


@progress_required
def test_progress_of_a_lost_lease_is_ignored(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue, lease=0.3)
    time.sleep(0.5)
    reserve_one(jobs_driver, jobs_queue, lease=30.0)
    jobs_driver.save_progress(held, Progress(1, 2, "stale"), "old-worker")
    assert _status(jobs_driver, ident).progress is None


@cancel_required
def test_cancel_removes_a_waiting_job(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    assert jobs_driver.cancel(ident) == CANCEL_REMOVED
    assert_nothing(jobs_driver, [jobs_queue])
    if jobs_driver.supports(Capability.STATUS) and _keeps_results(jobs_driver):
        assert _status(jobs_driver, ident).state == CANCELLED
    assert jobs_driver.cancel(ident) in {CANCEL_FINISHED, CANCEL_NOT_FOUND}


@pytest.mark.jobs_requires(Capability.CANCEL, Capability.UNIQUE)
def test_cancel_releases_the_unique_key(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, unique_key=f"{jobs_queue}-k"))
    assert jobs_driver.cancel(ident) == CANCEL_REMOVED
    (again,) = jobs_driver.enqueue([message(jobs_queue, unique_key=f"{jobs_queue}-k")])
    assert again is not None


@cancel_required
def test_cancel_of_an_unknown_id_is_not_found(jobs_driver: Driver) -> None:
    assert jobs_driver.cancel(UNKNOWN) == CANCEL_NOT_FOUND


@cancel_required
def test_cancel_of_a_running_job_is_seen_by_its_worker(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    other = enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue)
    bystander = reserve_one(jobs_driver, jobs_queue)
    assert {held.id, bystander.id} == {ident, other}
    target, kept = (held, bystander) if held.id == ident else (bystander, held)
    assert jobs_driver.cancel_requested([held, bystander]) == set()
    assert jobs_driver.cancel(ident) == CANCEL_REQUESTED
    assert wait_for(lambda: jobs_driver.cancel_requested([held, bystander]) == {ident})
    if jobs_driver.supports(Capability.STATUS):
        requested = _status(jobs_driver, ident)
        assert requested.state == RUNNING and requested.cancel_requested
    jobs_driver.ack_cancelled(target)
    assert_nothing(jobs_driver, [jobs_queue])
    if jobs_driver.supports(Capability.STATUS) and _keeps_results(jobs_driver):
        assert _status(jobs_driver, ident).state == CANCELLED
    jobs_driver.ack(kept)


@cancel_required
def test_a_cancel_request_survives_a_lost_lease(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    reserve_one(jobs_driver, jobs_queue, lease=0.3)
    assert jobs_driver.cancel(ident) == CANCEL_REQUESTED
    time.sleep(0.5)
    again = reserve_one(jobs_driver, jobs_queue, lease=30.0)
    assert jobs_driver.cancel_requested([again]) == {ident}
    jobs_driver.ack_cancelled(again)
    assert_nothing(jobs_driver, [jobs_queue])


@status_required
def test_an_id_dispatched_again_after_it_finished_reports_its_latest_run(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    if not _keeps_results(jobs_driver):
        pytest.skip("results_ttl is 0: this driver keeps no results")
    first = message(jobs_queue, {"run": 1})
    ident = enqueue_one(jobs_driver, first)
    jobs_driver.ack_results([reserve_one(jobs_driver, jobs_queue)], ['"first"'])
    assert _status(jobs_driver, ident).result == "first"
    enqueue_one(jobs_driver, first.replace(payload={"run": 2}))
    assert _status(jobs_driver, ident).state == QUEUED  # the unfinished run comes first
    again = reserve_one(jobs_driver, jobs_queue)
    assert again.message.payload == {"run": 2}
    jobs_driver.ack_results([again], ['"second"'])
    assert _status(jobs_driver, ident).result == "second"
