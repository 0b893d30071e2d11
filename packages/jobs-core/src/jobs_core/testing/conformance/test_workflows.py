"""Workflows (``WORKFLOWS``): batch, chain and dependency state counted with the ack.

The tests drive the contract the way a worker and the workflow layer do:
records and their first jobs are written through
:meth:`~jobs_core.driver.Driver.workflow_transaction` with the functions of
:mod:`jobs_core.workflow_state`, jobs are finished with ``ack``, ``ack_many``
and ``fail``, and what matters is checked on the backend: each callback or
next link is stored exactly once, and the counts are exact, with completions
from several threads and several processes, retries, cancellation, and a
worker that dies between finishing a job and acknowledging it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from jobs_core import workflow_state as ws
from jobs_core.driver import Capability, Driver
from jobs_core.errors import WorkflowError, WorkflowNotFound
from jobs_core.ids import new_id
from jobs_core.message import Delivery
from jobs_core.status import CANCEL_REMOVED, CANCEL_REQUESTED
from jobs_core.testing.conformance._helpers import (
    LONG_LEASE,
    assert_nothing,
    delivery_timeout,
    enqueue_one,
    message,
    reserve_one,
    reserve_until,
)
from jobs_core.testing.plugin import DriverFactory, QueueFactory

pytestmark = pytest.mark.jobs_requires(Capability.WORKFLOWS)


# -- building workflows as the layer does ---------------------------------------


def make_batch(
    driver: Driver,
    queue: str,
    count: int,
    callbacks_queue: str,
    *,
    allow_failures: bool = False,
    max_retries: int = 0,
) -> str:
    """A batch of ``count`` jobs on ``queue``; its callbacks go to ``callbacks_queue``."""
    batch_id = new_id()
    jobs = [
        message(queue, {"n": n}, max_retries=max_retries, headers={ws.WORKFLOW_HEADER: batch_id})
        for n in range(count)
    ]
    callbacks = {
        name: message(callbacks_queue, {"callback": name, "batch_id": batch_id}).encode().decode()
        for name in ws.CALLBACKS
    }
    state = {"allow_failures": allow_failures, "callbacks": callbacks}
    record = ws.new_record(ws.BATCH, batch_id, count, state)
    with driver.workflow_transaction() as store:
        ws.create(store, record, jobs)
    return batch_id


def make_chain(driver: Driver, queue: str, count: int) -> str:
    """A chain of ``count`` links on ``queue`` (payload ``{"link": i}``)."""
    chain_id = new_id()
    links = [
        message(queue, {"link": i}, headers={ws.WORKFLOW_HEADER: chain_id, ws.STEP_HEADER: str(i)})
        for i in range(count)
    ]
    state = {"links": [m.encode().decode() for m in links], "position": 0}
    record = ws.new_record(ws.CHAIN, chain_id, count, state)
    with driver.workflow_transaction() as store:
        ws.create(store, record, links[:1])
    return chain_id


def make_dependent(driver: Driver, queue: str, after: Sequence[str], payload: Any = "dependent") -> str:
    """A job on ``queue`` that waits for the workflows ``after``."""
    job = message(queue, payload)
    job = job.replace(headers={ws.WORKFLOW_HEADER: job.id})
    record = ws.new_record(ws.JOB, job.id, 1, {"message": job.encode().decode(), "after": list(after)})
    with driver.workflow_transaction() as store:
        ws.create(store, record, [])
    return job.id


@dataclasses.dataclass
class Started:
    """A batch made by :func:`start_batch`: its id, its queues, and its jobs reserved."""

    batch_id: str
    queue: str
    callbacks: str
    got: list[Delivery]


def start_batch(
    driver: Driver, queues: QueueFactory, count: int, *, reserve: int | None = None, **options: Any
) -> Started:
    """A batch of ``count`` jobs on a new queue, callbacks on another, ``reserve`` jobs
    (all by default) reserved; ``options`` as :func:`make_batch` takes them.
    """
    queue, callbacks = queues(), queues()
    batch_id = make_batch(driver, queue, count, callbacks, **options)
    wanted = count if reserve is None else reserve
    got = reserve_until(driver, [queue], wanted) if wanted else []
    assert len(got) == wanted, f"reserved {len(got)} of the batch's {wanted} jobs"
    return Started(batch_id, queue, callbacks, got)


def record_of(driver: Driver, workflow_id: str) -> ws.WorkflowRecord:
    record = driver.workflow(workflow_id)
    assert record is not None, f"workflow {workflow_id} is not stored"
    return record


def drain(driver: Driver, queue: str, *, settle: float = 0.3) -> list[Delivery]:
    """Reserve everything on ``queue`` until nothing more comes for ``settle`` seconds."""
    got: list[Delivery] = []
    deadline = time.monotonic() + delivery_timeout()
    quiet_until = time.monotonic() + settle
    while time.monotonic() < deadline:
        batch = driver.reserve([queue], limit=100, lease=LONG_LEASE, timeout=0.1)
        if batch:
            got.extend(batch)
            quiet_until = time.monotonic() + settle
        elif time.monotonic() >= quiet_until:
            break
    return got


def callbacks_fired(driver: Driver, queue: str) -> list[str]:
    """Names of the callbacks stored on ``queue`` (each reserved and acked)."""
    got = drain(driver, queue)
    driver.ack_many(got)
    return sorted(d.message.payload["callback"] for d in got)


# -- batches ---------------------------------------------------------------------


def test_a_batch_counts_each_job_once_and_fires_then_and_finally_once(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 5)
    batch_id, callbacks, got = b.batch_id, b.callbacks, b.got
    record = record_of(jobs_driver, batch_id)
    assert (record.kind, record.status, record.total, record.pending) == (ws.BATCH, ws.RUNNING, 5, 5)
    jobs_driver.ack(got[0])
    jobs_driver.ack(got[0])  # idempotent: counted once
    assert record_of(jobs_driver, batch_id).succeeded == 1
    assert_nothing(jobs_driver, [callbacks])
    jobs_driver.ack_many(got[1:])
    jobs_driver.ack_many(got)  # all again: nothing changes
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.pending, record.status) == (5, 0, 0, ws.SUCCEEDED)
    assert record.finished
    assert callbacks_fired(jobs_driver, callbacks) == ["finally", "then"]


def test_a_failure_fires_catch_at_once_and_finally_at_the_end(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 3)
    batch_id, callbacks, got = b.batch_id, b.callbacks, b.got
    jobs_driver.fail(got[0], "ValueError: first")
    jobs_driver.fail(got[0], "ValueError: again")  # lease gone: ignored
    assert callbacks_fired(jobs_driver, callbacks) == ["catch"]
    jobs_driver.fail(got[1], "ValueError: second")
    jobs_driver.ack(got[2])
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.status) == (1, 2, ws.FAILED)
    assert record.failed_ids == [got[0].id, got[1].id]
    assert callbacks_fired(jobs_driver, callbacks) == ["finally"], "catch fires once, then never"


def test_allow_failures_fires_catch_at_the_end(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 2, allow_failures=True)
    batch_id, callbacks, got = b.batch_id, b.callbacks, b.got
    jobs_driver.fail(got[0], "ValueError: boom")
    assert callbacks_fired(jobs_driver, callbacks) == []
    jobs_driver.ack(got[1])
    assert callbacks_fired(jobs_driver, callbacks) == ["catch", "finally"]
    assert record_of(jobs_driver, batch_id).status == ws.FAILED


def test_a_retry_is_not_a_completion(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1, reserve=0, max_retries=3)
    batch_id, queue, callbacks = b.batch_id, b.queue, b.callbacks
    for attempt in range(3):
        jobs_driver.retry(reserve_one(jobs_driver, queue), 0.0, f"error {attempt}")
        record = record_of(jobs_driver, batch_id)
        assert (record.succeeded, record.failed, record.pending) == (0, 0, 1)
    jobs_driver.ack(reserve_one(jobs_driver, queue))
    assert record_of(jobs_driver, batch_id).succeeded == 1
    assert callbacks_fired(jobs_driver, callbacks) == ["finally", "then"]


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_a_failed_job_retried_from_the_failed_store_counts_as_succeeded(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 2, allow_failures=True)
    batch_id, queue, callbacks, got = b.batch_id, b.queue, b.callbacks, b.got
    jobs_driver.fail(got[0], "ValueError: boom")
    jobs_driver.ack(got[1])
    assert callbacks_fired(jobs_driver, callbacks) == ["catch", "finally"]
    assert jobs_driver.retry_failed(got[0].id)
    again = reserve_one(jobs_driver, queue)
    assert again.message.headers.get(ws.WORKFLOW_HEADER) == batch_id
    jobs_driver.ack(again)
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.failed_ids, record.status) == (2, 0, [], ws.SUCCEEDED)
    assert callbacks_fired(jobs_driver, callbacks) == ["then"], "then fires once every job succeeded"


def test_completions_from_many_threads_fire_each_callback_once(
    jobs_driver_factory: DriverFactory, jobs_queue_factory: QueueFactory
) -> None:
    queue, callbacks = jobs_queue_factory(), jobs_queue_factory()
    count, workers = 60, 6
    batch_id = make_batch(jobs_driver_factory(), queue, count, callbacks)
    drivers = [jobs_driver_factory() for _ in range(workers)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []
    finished = threading.Event()

    def work(driver: Driver) -> None:
        try:
            barrier.wait(timeout=30)
            while not finished.is_set():
                got = driver.reserve([queue], limit=3, lease=LONG_LEASE, timeout=0.2)
                if not got:
                    record = driver.workflow(batch_id)
                    if record is not None and record.pending == 0:
                        finished.set()
                    continue
                if len(got) > 1:
                    driver.ack_many(got)
                else:
                    driver.ack(got[0])
        except BaseException as exc:  # reported below
            errors.append(exc)
            finished.set()

    threads = [threading.Thread(target=work, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    finished.wait(delivery_timeout() * 3)
    finished.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    record = record_of(drivers[0], batch_id)
    assert (record.succeeded, record.failed, record.pending, record.status) == (count, 0, 0, ws.SUCCEEDED)
    assert callbacks_fired(drivers[0], callbacks) == ["finally", "then"]


def _ack_together(
    driver: Driver, delivery: Delivery, barrier: threading.Barrier, errors: list[BaseException]
) -> None:
    try:
        barrier.wait(timeout=30)
        driver.ack(delivery)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_the_last_two_jobs_finished_at_the_same_moment_fire_each_callback_once(
    jobs_driver_factory: DriverFactory, jobs_queue_factory: QueueFactory
) -> None:
    first, second = jobs_driver_factory(), jobs_driver_factory()
    for _ in range(5):
        queue, callbacks = jobs_queue_factory(), jobs_queue_factory()
        batch_id = make_batch(first, queue, 2, callbacks)
        mine = reserve_one(first, queue)
        theirs = reserve_one(second, queue)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_ack_together, args=(first, mine, barrier, errors)),
            threading.Thread(target=_ack_together, args=(second, theirs, barrier, errors)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        record = record_of(first, batch_id)
        assert (record.succeeded, record.pending, record.status) == (2, 0, ws.SUCCEEDED)
        assert callbacks_fired(first, callbacks) == ["finally", "then"]


_CHILD = """
import sys, time
from jobs_core.testing.plugin import driver_class
url, queue = sys.argv[1], sys.argv[2]
driver = driver_class(url).from_config(url)
idle = 0
while idle < 10:
    got = driver.reserve([queue], limit=2, lease=60.0, timeout=0.2)
    if not got:
        idle += 1
        continue
    idle = 0
    driver.ack_many(got)
driver.close()
"""


def test_completions_from_several_processes_fire_each_callback_once(
    jobs_driver: Driver, jobs_backend_url: str, jobs_queue_factory: QueueFactory
) -> None:
    if jobs_driver.name == "memory":
        pytest.skip("the memory backend lives inside one process")
    queue, callbacks = jobs_queue_factory(), jobs_queue_factory()
    count = 40
    batch_id = make_batch(jobs_driver, queue, count, callbacks)
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, jobs_backend_url, queue]) for _ in range(3)]
    for child in children:
        assert child.wait(timeout=120) == 0
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.pending, record.status) == (count, 0, ws.SUCCEEDED)
    assert callbacks_fired(jobs_driver, callbacks) == ["finally", "then"]


@pytest.mark.jobs_requires(Capability.LEASE_HANDOFF)
def test_a_worker_that_dies_before_the_ack_counts_nothing_and_its_job_comes_back(
    jobs_driver_factory: DriverFactory, jobs_queue_factory: QueueFactory
) -> None:
    """The crash between "job done" and "callback enqueued": the ack and the
    callback are one step, so a worker dying after the job ran but before the
    ack leaves both undone; the redelivered job's ack does both, once, and
    the dead worker's late ack does nothing.
    """
    queue, callbacks = jobs_queue_factory(), jobs_queue_factory()
    dead, alive = jobs_driver_factory(), jobs_driver_factory()
    batch_id = make_batch(dead, queue, 1, callbacks)
    lost = dead.reserve([queue], limit=1, lease=0.5, timeout=delivery_timeout())[0]
    assert_nothing(alive, [callbacks], wait=0.8)  # the job ran; its worker died: no ack
    again = reserve_one(alive, queue)
    assert again.id == lost.id
    assert record_of(alive, batch_id).pending == 1
    alive.ack(again)
    dead.ack(lost)  # the old lease's ack arrives late: ignored
    record = record_of(alive, batch_id)
    assert (record.succeeded, record.pending) == (1, 0)
    assert callbacks_fired(alive, callbacks) == ["finally", "then"]


def test_a_transaction_that_raises_stores_nothing(jobs_driver: Driver, jobs_queue: str) -> None:
    batch_id = new_id()
    job = message(jobs_queue, "never", headers={ws.WORKFLOW_HEADER: batch_id})
    record = ws.new_record(ws.BATCH, batch_id, 1, {})
    with pytest.raises(RuntimeError, match="midway"), jobs_driver.workflow_transaction() as store:
        ws.create(store, record, [job])
        raise RuntimeError("midway")
    assert jobs_driver.workflow(batch_id) is None
    assert_nothing(jobs_driver, [jobs_queue])


def test_cancel_removes_the_waiting_jobs_and_running_ones_finish(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 5, reserve=2)
    batch_id, queue, callbacks, running = b.batch_id, b.queue, b.callbacks, b.got
    with jobs_driver.workflow_transaction() as store:
        assert ws.cancel(store, batch_id)
    with jobs_driver.workflow_transaction() as store:
        assert not ws.cancel(store, batch_id), "a second cancel changes nothing"
    record = record_of(jobs_driver, batch_id)
    assert (record.status, record.cancelled, record.pending) == (ws.CANCELLED, 3, 2)
    assert_nothing(jobs_driver, [queue])
    jobs_driver.ack(running[0])
    jobs_driver.fail(running[1], "ValueError: late")
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.cancelled, record.pending) == (1, 1, 3, 0)
    assert record.finished and record.status == ws.CANCELLED
    assert callbacks_fired(jobs_driver, callbacks) == ["finally"]


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_cancelling_a_failed_job_waiting_for_its_retry_counts_it_cancelled_not_failed(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 2, allow_failures=True)
    batch_id, callbacks, (failing, running) = b.batch_id, b.callbacks, b.got
    jobs_driver.fail(failing, "ValueError: boom")
    assert jobs_driver.retry_failed(failing.id)
    with jobs_driver.workflow_transaction() as store:
        assert ws.cancel(store, batch_id)
    jobs_driver.ack(running)
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.cancelled, record.pending) == (1, 0, 1, 0)
    assert record.failed_ids == []
    assert callbacks_fired(jobs_driver, callbacks) == ["finally"]


def test_jobs_added_to_a_running_batch_are_counted_before_it_can_end(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1)
    batch_id, queue, callbacks, (first,) = b.batch_id, b.queue, b.callbacks, b.got
    extra = [message(queue, {"extra": n}, headers={ws.WORKFLOW_HEADER: batch_id}) for n in range(2)]
    with jobs_driver.workflow_transaction() as store:
        ws.add(store, batch_id, extra)
    jobs_driver.ack(first)
    assert_nothing(jobs_driver, [callbacks])
    assert record_of(jobs_driver, batch_id).total == 3
    jobs_driver.ack_many(reserve_until(jobs_driver, [queue], 2))
    assert callbacks_fired(jobs_driver, callbacks) == ["finally", "then"]


# -- chains ----------------------------------------------------------------------


def test_a_chain_enqueues_each_link_once_with_the_previous_result(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    chain_id = make_chain(jobs_driver, jobs_queue, 3)
    for index in range(3):
        link = reserve_one(jobs_driver, jobs_queue)
        assert link.message.payload == {"link": index}
        expected = None if index == 0 else json.dumps({"from": index - 1}, separators=(",", ":"))
        assert link.message.headers.get(ws.RESULT_HEADER) == expected
        assert_nothing(jobs_driver, [jobs_queue], wait=0.2)
        jobs_driver.ack(dataclasses.replace(link, result={"from": index}))
        jobs_driver.ack(dataclasses.replace(link, result={"from": index}))
    assert_nothing(jobs_driver, [jobs_queue])
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.succeeded, record.state["position"]) == (ws.SUCCEEDED, 3, 3)


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_a_failed_link_stops_the_chain_and_retrying_it_resumes(jobs_driver: Driver, jobs_queue: str) -> None:
    chain_id = make_chain(jobs_driver, jobs_queue, 3)
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue))
    second = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.fail(second, "ValueError: link 1")
    assert_nothing(jobs_driver, [jobs_queue])
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.failed, record.failed_ids, record.pending) == (
        ws.FAILED,
        1,
        [second.id],
        1,
    )
    assert jobs_driver.retry_failed(second.id)
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue))
    third = reserve_one(jobs_driver, jobs_queue)
    assert third.message.payload == {"link": 2}
    jobs_driver.ack(third)
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.succeeded, record.failed, record.pending) == (ws.SUCCEEDED, 3, 0, 0)


# -- dependencies ----------------------------------------------------------------


def test_a_dependent_job_waits_for_every_dependency(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, callbacks, later = jobs_queue_factory(), jobs_queue_factory(), jobs_queue_factory()
    batch_id = make_batch(jobs_driver, queue, 1, callbacks)
    chain_id = make_chain(jobs_driver, queue, 1)
    dependent = make_dependent(jobs_driver, later, [batch_id, chain_id])
    assert record_of(jobs_driver, dependent).status == ws.WAITING
    first = reserve_one(jobs_driver, queue)
    jobs_driver.ack(first)
    assert_nothing(jobs_driver, [later])
    jobs_driver.ack(reserve_one(jobs_driver, queue))
    got = reserve_one(jobs_driver, later)
    assert got.id == dependent
    assert_nothing(jobs_driver, [later])
    jobs_driver.ack(got)
    assert record_of(jobs_driver, dependent).status == ws.SUCCEEDED
    # A dependency that already finished counts at once.
    follower = make_dependent(jobs_driver, later, [dependent])
    assert reserve_one(jobs_driver, later).id == follower


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_a_failed_dependency_fails_the_dependent_with_the_reason(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, callbacks, later = jobs_queue_factory(), jobs_queue_factory(), jobs_queue_factory()
    batch_id = make_batch(jobs_driver, queue, 1, callbacks)
    dependent = make_dependent(jobs_driver, later, [batch_id])
    grandchild = make_dependent(jobs_driver, later, [dependent])
    jobs_driver.fail(reserve_one(jobs_driver, queue), "ValueError: boom")
    assert_nothing(jobs_driver, [later])
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert batch_id in failed[dependent]
    assert dependent in failed[grandchild]
    assert record_of(jobs_driver, grandchild).status == ws.FAILED


def test_an_unknown_dependency_is_refused_and_nothing_is_stored(jobs_driver: Driver, jobs_queue: str) -> None:
    known = make_chain(jobs_driver, jobs_queue, 1)
    with pytest.raises(WorkflowNotFound, match="no-such-id"):
        make_dependent(jobs_driver, jobs_queue, [known, "no-such-id"])
    assert record_of(jobs_driver, known).state.get("dependents", []) == []
    assert reserve_one(jobs_driver, jobs_queue).message.payload == {"link": 0}
    assert_nothing(jobs_driver, [jobs_queue])


def test_workflows_are_listed_newest_first(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    queue = jobs_queue_factory()
    first = make_batch(jobs_driver, queue, 1, queue)
    time.sleep(0.01)
    second = make_batch(jobs_driver, queue, 1, queue)
    ids = [r.id for r in jobs_driver.workflows(ws.BATCH, limit=1000)]
    assert ids.index(second) < ids.index(first)
    assert all(r.kind == ws.BATCH for r in jobs_driver.workflows(ws.BATCH))
    assert jobs_driver.workflow("no-such-workflow") is None


# -- cancelling one job of a workflow ---------------------------------------------


def _cancel_waiting(driver: Driver, delivery: Delivery) -> None:
    """Put a reserved job back on its queue, then cancel it while it waits."""
    driver.release(delivery)
    assert driver.cancel(delivery.id) == CANCEL_REMOVED


@pytest.mark.jobs_requires(Capability.CANCEL)
def test_a_batch_job_cancelled_while_waiting_counts_as_failed_and_the_batch_finishes(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 3)
    batch_id, queue, callbacks, got = b.batch_id, b.queue, b.callbacks, b.got
    _cancel_waiting(jobs_driver, got[2])
    assert jobs_driver.cancel(got[2].id) != CANCEL_REMOVED, "a second cancel changes nothing"
    assert callbacks_fired(jobs_driver, callbacks) == ["catch"], "catch fires at once, as for a failure"
    assert_nothing(jobs_driver, [queue])
    jobs_driver.ack_many(got[:2])
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.failed, record.cancelled, record.pending) == (2, 0, 1, 0)
    assert record.finished and record.status == ws.FAILED
    assert callbacks_fired(jobs_driver, callbacks) == ["finally"], "finally fires once, then never"


@pytest.mark.jobs_requires(Capability.CANCEL)
def test_an_allow_failures_batch_goes_on_after_a_cancelled_job(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 2, allow_failures=True)
    batch_id, callbacks, (first, second) = b.batch_id, b.callbacks, b.got
    _cancel_waiting(jobs_driver, second)
    assert callbacks_fired(jobs_driver, callbacks) == []
    jobs_driver.ack(first)
    record = record_of(jobs_driver, batch_id)
    assert (record.succeeded, record.cancelled, record.pending, record.finished) == (1, 1, 0, True)
    assert callbacks_fired(jobs_driver, callbacks) == ["catch", "finally"]


@pytest.mark.jobs_requires(Capability.CANCEL)
def test_a_running_batch_job_finished_as_cancelled_is_counted(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1)
    batch_id, callbacks, (running,) = b.batch_id, b.callbacks, b.got
    assert jobs_driver.cancel(running.id) == CANCEL_REQUESTED
    assert record_of(jobs_driver, batch_id).pending == 1, "counted when the worker ends it, not before"
    jobs_driver.ack_cancelled(running)
    jobs_driver.ack_cancelled(running)  # lease gone: ignored
    record = record_of(jobs_driver, batch_id)
    assert (record.cancelled, record.pending, record.status) == (1, 0, ws.FAILED)
    assert callbacks_fired(jobs_driver, callbacks) == ["catch", "finally"]


@pytest.mark.jobs_requires(Capability.CANCEL)
def test_a_chain_whose_waiting_link_is_cancelled_stops(jobs_driver: Driver, jobs_queue: str) -> None:
    chain_id = make_chain(jobs_driver, jobs_queue, 3)
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue))
    _cancel_waiting(jobs_driver, reserve_one(jobs_driver, jobs_queue))
    assert_nothing(jobs_driver, [jobs_queue])
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.succeeded, record.cancelled, record.state["position"]) == (
        ws.CANCELLED,
        1,
        1,
        1,
    )
    assert record.finished


@pytest.mark.jobs_requires(Capability.CANCEL, Capability.FAILED_STORE)
def test_a_job_depending_on_a_cancelled_chain_fails_with_the_reason(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    chain_id = make_chain(jobs_driver, queue, 2)
    dependent = make_dependent(jobs_driver, later, [chain_id])
    _cancel_waiting(jobs_driver, reserve_one(jobs_driver, queue))
    assert_nothing(jobs_driver, [queue, later])
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert chain_id in failed[dependent] and "cancelled" in failed[dependent]
    assert record_of(jobs_driver, dependent).status == ws.FAILED


@pytest.mark.jobs_requires(Capability.CANCEL, Capability.FAILED_STORE)
def test_a_cancelled_dependent_job_ends_cancelled_and_fails_the_jobs_waiting_for_it(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    tracked = make_dependent(jobs_driver, jobs_queue, [])
    follower = make_dependent(jobs_driver, jobs_queue, [tracked])
    _cancel_waiting(jobs_driver, reserve_one(jobs_driver, jobs_queue))
    assert_nothing(jobs_driver, [jobs_queue])
    record = record_of(jobs_driver, tracked)
    assert (record.status, record.cancelled, record.finished) == (ws.CANCELLED, 1, True)
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=jobs_queue)}
    assert tracked in failed[follower] and "cancelled" in failed[follower]


# -- waiting for a plainly dispatched job (a watch) -------------------------------


def test_a_job_can_wait_for_plainly_dispatched_jobs_waiting_or_running(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    running_id = enqueue_one(jobs_driver, message(queue, "first"))
    running = reserve_one(jobs_driver, queue)
    waiting_id = enqueue_one(jobs_driver, message(queue, "second"))
    dependent = make_dependent(jobs_driver, later, [running_id, waiting_id])
    assert record_of(jobs_driver, dependent).status == ws.WAITING
    jobs_driver.ack(running)
    assert_nothing(jobs_driver, [later])
    second = reserve_one(jobs_driver, queue)
    assert second.id == waiting_id
    assert ws.WORKFLOW_HEADER not in second.message.headers, "a watched job's message is unchanged"
    jobs_driver.ack_many([second])
    assert reserve_one(jobs_driver, later).id == dependent
    assert_nothing(jobs_driver, [later])
    for job_id in (running_id, waiting_id):
        record = record_of(jobs_driver, job_id)
        assert (record.kind, record.status, record.succeeded, record.finished) == (
            ws.JOB,
            ws.SUCCEEDED,
            1,
            True,
        )


def test_a_retried_watched_job_counts_once_when_it_finally_succeeds(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    job_id = enqueue_one(jobs_driver, message(queue, "flaky", max_retries=2))
    dependent = make_dependent(jobs_driver, later, [job_id])
    jobs_driver.retry(reserve_one(jobs_driver, queue), 0.0, "ValueError: once")
    assert_nothing(jobs_driver, [later])
    again = reserve_one(jobs_driver, queue)
    jobs_driver.ack(again)
    jobs_driver.ack(again)  # lease gone: ignored
    assert reserve_one(jobs_driver, later).id == dependent
    assert record_of(jobs_driver, job_id).succeeded == 1


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_a_failed_watched_job_fails_the_job_waiting_for_it(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    job_id = enqueue_one(jobs_driver, message(queue, "doomed"))
    dependent = make_dependent(jobs_driver, later, [job_id])
    jobs_driver.fail(reserve_one(jobs_driver, queue), "ValueError: boom")
    assert_nothing(jobs_driver, [later])
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert job_id in failed[dependent] and "ValueError: boom" in failed[dependent]
    assert record_of(jobs_driver, dependent).status == ws.FAILED


@pytest.mark.jobs_requires(Capability.STATUS, Capability.FAILED_STORE)
def test_waiting_for_a_finished_job_runs_at_once_or_fails_at_once(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    if jobs_driver.results_ttl <= 0:
        pytest.skip("the driver keeps no results (results_ttl is 0)")
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    done_id = enqueue_one(jobs_driver, message(queue, "done"))
    jobs_driver.ack_results([reserve_one(jobs_driver, queue)], ['"ok"'])
    failed_id = enqueue_one(jobs_driver, message(queue, "failed"))
    jobs_driver.fail(reserve_one(jobs_driver, queue), "ValueError: boom")
    runs = make_dependent(jobs_driver, later, [done_id])
    assert reserve_one(jobs_driver, later).id == runs
    fails = make_dependent(jobs_driver, later, [done_id, failed_id])
    assert_nothing(jobs_driver, [later])
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert failed_id in failed[fails]
    assert jobs_driver.workflow(done_id) is None, "nothing to watch: no record"


def test_waiting_for_an_unknown_job_or_a_job_of_a_batch_is_refused(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1, reserve=0)
    later = jobs_queue_factory()
    with pytest.raises(WorkflowNotFound, match="no-such-job"):
        make_dependent(jobs_driver, later, ["no-such-job"])
    member = reserve_one(jobs_driver, b.queue)
    with pytest.raises(WorkflowError, match="batch or chain id"):
        make_dependent(jobs_driver, later, [member.id])
    assert jobs_driver.workflow(member.id) is None
    assert_nothing(jobs_driver, [later])


def _watch_together(
    driver: Driver,
    queue: str,
    job_id: str,
    barrier: threading.Barrier,
    made: list[str],
    errors: list[BaseException],
) -> None:
    barrier.wait(timeout=30)
    try:
        made.append(make_dependent(driver, queue, [job_id]))
    except WorkflowNotFound:  # the ack came first and no result is kept
        pass
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_watch_racing_the_ack_never_leaves_the_dependent_waiting(
    jobs_driver_factory: DriverFactory, jobs_queue_factory: QueueFactory
) -> None:
    """The ack and the watch meet on the job's row: either the watch came first
    (the ack counts it and the dependent is enqueued) or the ack did (the job is
    finished: known by its kept result, or unknown and refused).
    """
    acker, watcher = jobs_driver_factory(), jobs_driver_factory()
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    for _ in range(8):
        job_id = enqueue_one(acker, message(queue, "raced"))
        held = reserve_one(acker, queue)
        barrier = threading.Barrier(2)
        made: list[str] = []
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=_watch_together, args=(watcher, later, job_id, barrier, made, errors)
        )
        thread.start()
        _ack_together(acker, held, barrier, errors)
        thread.join(60)
        assert not errors, errors
        if made:
            assert reserve_one(acker, later).id == made[0]
            assert record_of(acker, made[0]).status == ws.RUNNING
    assert_nothing(acker, [queue, later])


# -- cancelling a chain, a waiting dependent job ----------------------------------


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_cancelling_a_chain_keeps_its_waiting_links_from_running(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    chain_id = make_chain(jobs_driver, queue, 4)
    dependent = make_dependent(jobs_driver, later, [chain_id])
    jobs_driver.ack(reserve_one(jobs_driver, queue))
    with jobs_driver.workflow_transaction() as store:
        assert ws.cancel(store, chain_id, ws.CHAIN)
    with jobs_driver.workflow_transaction() as store:
        assert not ws.cancel(store, chain_id, ws.CHAIN), "a second cancel changes nothing"
    assert_nothing(jobs_driver, [queue, later])
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.succeeded, record.cancelled, record.pending) == (ws.CANCELLED, 1, 3, 0)
    assert record.finished
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert chain_id in failed[dependent] and "cancelled" in failed[dependent]


def test_a_chain_cancelled_while_a_link_runs_ends_when_the_link_finishes(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    chain_id = make_chain(jobs_driver, jobs_queue, 3)
    running = reserve_one(jobs_driver, jobs_queue)
    with jobs_driver.workflow_transaction() as store:
        assert ws.cancel(store, chain_id, ws.CHAIN)
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.cancelled, record.pending, record.finished) == (ws.CANCELLED, 2, 1, False)
    jobs_driver.ack(running)
    assert_nothing(jobs_driver, [jobs_queue])
    record = record_of(jobs_driver, chain_id)
    assert (record.status, record.succeeded, record.cancelled, record.pending) == (ws.CANCELLED, 1, 2, 0)
    assert record.finished


def test_cancelling_a_batch_as_a_chain_is_refused(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1, reserve=0)
    with pytest.raises(WorkflowError, match="not a chain"), jobs_driver.workflow_transaction() as store:
        ws.cancel(store, b.batch_id, ws.CHAIN)
    assert record_of(jobs_driver, b.batch_id).status == ws.RUNNING


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_a_dependent_job_cancelled_while_it_waits_never_runs_and_fails_its_followers(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    b = start_batch(jobs_driver, jobs_queue_factory, 1)
    later = jobs_queue_factory()
    dependent = make_dependent(jobs_driver, later, [b.batch_id])
    follower = make_dependent(jobs_driver, later, [dependent])
    with jobs_driver.workflow_transaction() as store:
        assert ws.cancel_waiting_job(store, dependent)
    with jobs_driver.workflow_transaction() as store:
        assert not ws.cancel_waiting_job(store, dependent), "it no longer waits"
        assert not ws.cancel_waiting_job(store, b.batch_id), "a batch is not a waiting job"
    record = record_of(jobs_driver, dependent)
    assert (record.status, record.cancelled, record.finished) == (ws.CANCELLED, 1, True)
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert dependent in failed[follower] and "cancelled" in failed[follower]
    jobs_driver.ack(b.got[0])  # the dependency finishes: the cancelled job stays unrun
    assert_nothing(jobs_driver, [later])
    assert record_of(jobs_driver, dependent).status == ws.CANCELLED


# -- pruning -----------------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.PRUNE)
def test_prune_removes_finished_workflow_records_only(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    done = start_batch(jobs_driver, jobs_queue_factory, 1)
    jobs_driver.ack(done.got[0])
    running = start_batch(jobs_driver, jobs_queue_factory, 1, reserve=0)
    stopped = make_chain(jobs_driver, running.queue, 1)
    jobs_driver.prune(3600.0)
    assert jobs_driver.workflow(done.batch_id) is not None, "younger than the retention: kept"
    time.sleep(0.05)
    removed = jobs_driver.prune(0.01)
    assert removed >= 2, "the finished batch's record and its acknowledged job are counted"
    assert jobs_driver.workflow(done.batch_id) is None
    assert record_of(jobs_driver, running.batch_id).status == ws.RUNNING
    assert record_of(jobs_driver, stopped).status == ws.RUNNING


# -- purge ------------------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.PURGE)
def test_a_purged_batch_counts_its_jobs_cancelled_and_fires_finally_once(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    started = start_batch(jobs_driver, jobs_queue_factory, 4, reserve=1)
    assert jobs_driver.purge(started.queue) == 3
    jobs_driver.ack(started.got[0])
    record = record_of(jobs_driver, started.batch_id)
    assert (record.succeeded, record.cancelled, record.pending, record.finished) == (1, 3, 0, True)
    callbacks = [d.message.payload["callback"] for d in drain(jobs_driver, started.callbacks)]
    assert sorted(callbacks) == ["catch", "finally"]


@pytest.mark.jobs_requires(Capability.PURGE, Capability.FAILED_STORE)
def test_purging_a_job_that_a_dependent_waits_for_fails_the_dependent_with_the_reason(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    queue, later = jobs_queue_factory(), jobs_queue_factory()
    watched = enqueue_one(jobs_driver, message(queue, "watched"))
    chain_id = make_chain(jobs_driver, queue, 2)
    on_job = make_dependent(jobs_driver, later, [watched])
    on_chain = make_dependent(jobs_driver, later, [chain_id])
    assert jobs_driver.purge(queue) == 2
    assert_nothing(jobs_driver, [queue, later])
    failed = {f.id: f.error for f in jobs_driver.failed(limit=50, queue=later)}
    assert watched in failed[on_job] and "cancelled" in failed[on_job]
    assert chain_id in failed[on_chain] and "cancelled" in failed[on_chain]
    assert record_of(jobs_driver, chain_id).status == ws.CANCELLED
