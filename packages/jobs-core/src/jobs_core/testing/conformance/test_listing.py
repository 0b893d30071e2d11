"""Jobs by state (``JOB_LISTING``) and workers seen recently (``WORKERS``).

``list_jobs`` is called as ``Jobs.jobs`` and the dashboard call it: waiting,
running and finished jobs of one queue, in the documented order, with
``limit`` and ``offset``. The worker records are written, replaced, removed
and expired as a worker's beacon thread and ``Jobs.workers`` use them.
"""

from __future__ import annotations

import time
import uuid

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.status import CANCELLED, DELAYED, FAILED, QUEUED, RUNNING, SUCCEEDED, Progress
from jobs_core.testing.conformance._helpers import JOB_NAME, enqueue_one, message, reserve_one, reserve_until
from jobs_core.worker_records import WORKER_EXPIRY, WorkerRecord

listing_required = pytest.mark.jobs_requires(Capability.JOB_LISTING)
workers_required = pytest.mark.jobs_requires(Capability.WORKERS)


def _ids(driver: Driver, state: str, queue: str, limit: int = 50, offset: int = 0) -> list[str]:
    return [status.id for status in driver.list_jobs(state, queue, limit, offset)]


@listing_required
def test_waiting_jobs_are_listed_in_the_order_they_would_run(jobs_driver: Driver, jobs_queue: str) -> None:
    first = enqueue_one(jobs_driver, message(jobs_queue, {"n": 1}))
    time.sleep(0.01)
    second = enqueue_one(jobs_driver, message(jobs_queue, {"n": 2}))
    listed = jobs_driver.list_jobs(QUEUED, jobs_queue)
    assert [s.id for s in listed] == [first, second]
    assert all((s.state, s.queue, s.name) == (QUEUED, jobs_queue, JOB_NAME) for s in listed)
    assert _ids(jobs_driver, QUEUED, jobs_queue, limit=1) == [first]
    assert _ids(jobs_driver, QUEUED, jobs_queue, limit=1, offset=1) == [second]
    assert _ids(jobs_driver, QUEUED, jobs_queue, offset=2) == []
    assert _ids(jobs_driver, RUNNING, jobs_queue) == []


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.PRIORITY)
def test_a_higher_priority_job_is_listed_first(jobs_driver: Driver, jobs_queue: str) -> None:
    low = enqueue_one(jobs_driver, message(jobs_queue, priority=0))
    high = enqueue_one(jobs_driver, message(jobs_queue, priority=5))
    assert _ids(jobs_driver, QUEUED, jobs_queue) == [high, low]


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.DELAY)
def test_delayed_jobs_are_listed_soonest_first_and_not_as_queued(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    now = time.time()
    later = enqueue_one(jobs_driver, message(jobs_queue, available_at=now + 600))
    sooner = enqueue_one(jobs_driver, message(jobs_queue, available_at=now + 60))
    due = enqueue_one(jobs_driver, message(jobs_queue))
    delayed = jobs_driver.list_jobs(DELAYED, jobs_queue)
    assert [s.id for s in delayed] == [sooner, later]
    assert delayed[0].available_at is not None and abs(delayed[0].available_at - (now + 60)) < 1.0
    assert _ids(jobs_driver, QUEUED, jobs_queue) == [due]


@listing_required
def test_a_leased_job_is_running_with_its_lease_end_and_the_listing_keeps_to_its_queue(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    other = f"{jobs_queue}-other"
    enqueue_one(jobs_driver, message(other))
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue, lease=30.0)
    (running,) = jobs_driver.list_jobs(RUNNING, jobs_queue)
    assert (running.id, running.state, running.queue) == (ident, RUNNING, jobs_queue)
    assert running.lease_expires_at is not None
    assert abs(running.lease_expires_at - held.lease_expires_at) < 1.0
    assert _ids(jobs_driver, QUEUED, jobs_queue) == []
    assert len(_ids(jobs_driver, QUEUED, other)) == 1


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.PROGRESS)
def test_a_running_job_is_listed_with_its_worker_and_progress(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.save_progress(held, Progress(3, 10, "thumbnails", time.time()), "host-a:41")
    (running,) = jobs_driver.list_jobs(RUNNING, jobs_queue)
    assert running.worker == "host-a:41"
    assert running.progress is not None
    assert (running.progress.done, running.progress.total, running.progress.note) == (3, 10, "thumbnails")


@listing_required
def test_a_job_whose_lease_ended_is_queued_again(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    reserve_one(jobs_driver, jobs_queue, lease=0.3)
    time.sleep(0.6)
    assert _ids(jobs_driver, RUNNING, jobs_queue) == []
    assert _ids(jobs_driver, QUEUED, jobs_queue) == [ident]


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.STATUS)
def test_succeeded_jobs_are_listed_newest_first_with_their_results(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    if jobs_driver.results_ttl <= 0:
        pytest.skip("this driver instance keeps no results (results_ttl is 0)")
    first, second = (enqueue_one(jobs_driver, message(jobs_queue, {"n": n})) for n in (1, 2))
    a, b = reserve_until(jobs_driver, [jobs_queue], 2)
    by_id = {a.message.id: a, b.message.id: b}
    jobs_driver.ack_results([by_id[first]], ['{"n": 1}'])
    time.sleep(0.02)
    jobs_driver.ack_results([by_id[second]], ['{"n": 2}'])
    listed = jobs_driver.list_jobs(SUCCEEDED, jobs_queue)
    assert [(s.id, s.state, s.result) for s in listed] == [
        (second, SUCCEEDED, {"n": 2}),
        (first, SUCCEEDED, {"n": 1}),
    ]
    assert all(s.finished_at is not None for s in listed)
    assert _ids(jobs_driver, SUCCEEDED, jobs_queue, limit=1, offset=1) == [first]
    assert _ids(jobs_driver, RUNNING, jobs_queue) == []


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.FAILED_STORE)
def test_failed_jobs_are_listed_newest_first_with_their_errors(jobs_driver: Driver, jobs_queue: str) -> None:
    first, second = (enqueue_one(jobs_driver, message(jobs_queue, {"n": n})) for n in (1, 2))
    held = {d.message.id: d for d in reserve_until(jobs_driver, [jobs_queue], 2)}
    jobs_driver.fail(held[first], "ValueError: one")
    time.sleep(0.02)
    jobs_driver.fail(held[second], "ValueError: two")
    listed = jobs_driver.list_jobs(FAILED, jobs_queue)
    assert [(s.id, s.state) for s in listed] == [(second, FAILED), (first, FAILED)]
    assert "ValueError: two" in (listed[0].error or "")


@pytest.mark.jobs_requires(Capability.JOB_LISTING, Capability.CANCEL, Capability.STATUS)
def test_a_cancelled_job_is_listed_as_cancelled(jobs_driver: Driver, jobs_queue: str) -> None:
    if jobs_driver.results_ttl <= 0:
        pytest.skip("this driver instance keeps no results (results_ttl is 0)")
    ident = enqueue_one(jobs_driver, message(jobs_queue))
    jobs_driver.cancel(ident)
    assert _ids(jobs_driver, CANCELLED, jobs_queue) == [ident]
    assert _ids(jobs_driver, QUEUED, jobs_queue) == []


def _record(worker_id: str, last_seen: float | None = None, **fields: object) -> WorkerRecord:
    now = time.time()
    values: dict[str, object] = {
        "id": worker_id,
        "name": "host-a:41",
        "hostname": "host-a",
        "pid": 41,
        "queues": ("default", "mail"),
        "concurrency": 4,
        "started_at": now - 5,
        "last_seen": now if last_seen is None else last_seen,
        "processed": 10,
        "failed": 1,
        "version": "1.2.3",
    }
    values.update(fields)
    return WorkerRecord(**values)  # type: ignore[arg-type]


def _mine(driver: Driver, prefix: str) -> list[WorkerRecord]:
    return [record for record in driver.workers() if record.id.startswith(prefix)]


@workers_required
def test_a_saved_worker_is_listed_and_replaced_by_its_next_record(jobs_driver: Driver) -> None:
    prefix = f"conformance-{uuid.uuid4().hex[:8]}"
    first = _record(f"{prefix}-a")
    jobs_driver.save_worker(first)
    assert _mine(jobs_driver, prefix) == [first]
    renewed = _record(f"{prefix}-a", processed=25, failed=2)
    jobs_driver.save_worker(renewed)
    (listed,) = _mine(jobs_driver, prefix)
    assert (listed.processed, listed.failed, listed.queues, listed.version) == (
        25,
        2,
        ("default", "mail"),
        "1.2.3",
    )
    assert abs(listed.last_seen - renewed.last_seen) < 0.01


@workers_required
def test_workers_are_listed_oldest_first_and_a_removed_one_is_gone(jobs_driver: Driver) -> None:
    prefix = f"conformance-{uuid.uuid4().hex[:8]}"
    now = time.time()
    jobs_driver.save_worker(_record(f"{prefix}-young", started_at=now - 1))
    jobs_driver.save_worker(_record(f"{prefix}-old", started_at=now - 100))
    assert [r.id for r in _mine(jobs_driver, prefix)] == [f"{prefix}-old", f"{prefix}-young"]
    assert jobs_driver.remove_worker(f"{prefix}-old") is True
    assert jobs_driver.remove_worker(f"{prefix}-old") is False
    assert [r.id for r in _mine(jobs_driver, prefix)] == [f"{prefix}-young"]
    jobs_driver.remove_worker(f"{prefix}-young")


@workers_required
def test_a_worker_not_seen_for_the_expiry_is_not_listed(jobs_driver: Driver) -> None:
    prefix = f"conformance-{uuid.uuid4().hex[:8]}"
    jobs_driver.save_worker(_record(f"{prefix}-gone", last_seen=time.time() - WORKER_EXPIRY - 5))
    jobs_driver.save_worker(_record(f"{prefix}-here"))
    assert [r.id for r in _mine(jobs_driver, prefix)] == [f"{prefix}-here"]
    assert jobs_driver.remove_worker(f"{prefix}-gone") is False  # deleted by the write that followed it
    jobs_driver.remove_worker(f"{prefix}-here")
