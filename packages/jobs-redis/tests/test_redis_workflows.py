"""Workflow transactions on Redis: record locks, and what a commit checks before it writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
from jobs_core import workflow_state as ws
from jobs_core.ids import new_id
from jobs_core.message import Message
from jobs_redis import RedisDriver


def _batch(driver: RedisDriver, count: int) -> str:
    batch_id = new_id()
    jobs = [
        Message(name="t.x", queue="q", payload={"n": n}, headers={ws.WORKFLOW_HEADER: batch_id})
        for n in range(count)
    ]
    then = Message(name="t.then", queue="cb", payload=None).encode().decode()
    record = ws.new_record(ws.BATCH, batch_id, count, {"callbacks": {"then": then}})
    with driver.workflow_transaction() as store:
        ws.create(store, record, jobs)
    return batch_id


def test_an_ack_waits_for_a_lock_left_by_a_dead_process(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    batch_id = _batch(driver, 1)
    (held,) = driver.reserve(["q"])
    # A transaction whose process died holding the record: its lock ends with its expiry.
    client.set(f"{driver.settings.base}wfl:{batch_id}", "dead-token", px=400)
    started = time.monotonic()
    driver.ack(held)
    assert time.monotonic() - started >= 0.3
    record = driver.workflow(batch_id)
    assert record is not None and (record.succeeded, record.status) == (1, ws.SUCCEEDED)
    assert [d.message.name for d in driver.reserve(["cb"], limit=5)] == ["t.then"]
    assert not client.exists(f"{driver.settings.base}wfl:{batch_id}")


def test_a_block_that_raises_releases_its_locks_and_writes_nothing(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    batch_id = _batch(driver, 2)
    with pytest.raises(RuntimeError, match="stop"), driver.workflow_transaction() as store:
        record = store.load(batch_id)
        assert record is not None
        record.succeeded = 2
        store.save(record)
        raise RuntimeError("stop")
    assert not client.exists(f"{driver.settings.base}wfl:{batch_id}")
    record = driver.workflow(batch_id)
    assert record is not None and record.succeeded == 0


def test_a_stale_ack_counts_nothing_and_unlocks(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    batch_id = _batch(driver, 1)
    (stale,) = driver.reserve(["q"], lease=0.2)
    time.sleep(0.3)
    (fresh,) = driver.reserve(["q"])
    driver.ack(stale)
    record = driver.workflow(batch_id)
    assert record is not None and record.succeeded == 0
    started = time.monotonic()
    driver.ack(fresh)
    assert time.monotonic() - started < 2.0, "the stale ack left its record locked"
    record = driver.workflow(batch_id)
    assert record is not None and record.succeeded == 1
    assert record.finished


def _plain_job(driver: RedisDriver) -> str:
    (job_id,) = driver.enqueue([Message(name="t.x", queue="q", payload=None)])
    assert job_id is not None
    return job_id


def _watching(driver: RedisDriver, job_id: str) -> ws.WorkflowRecord:
    """A dependent job, created now, that waits for ``job_id``."""
    dependent = _dependent([job_id])
    with driver.workflow_transaction() as store:
        ws.create(store, dependent, [])
    return dependent


def _dependent(after: list[str]) -> ws.WorkflowRecord:
    job = Message(name="t.after", queue="later", payload=None)
    job = job.replace(headers={ws.WORKFLOW_HEADER: job.id})
    return ws.new_record(ws.JOB, job.id, 1, {"message": job.encode().decode(), "after": after})


def test_an_ack_during_the_watch_waits_for_its_commit_and_counts_the_job(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver, acker = make_driver(), make_driver()
    job_id = _plain_job(driver)
    (held,) = driver.reserve(["q"])
    dependent = _dependent([job_id])
    acked = threading.Event()
    with driver.workflow_transaction() as store:
        ws.create(store, dependent, [])

        def ack_then_signal() -> None:
            acker.ack(held)
            acked.set()

        worker = threading.Thread(target=ack_then_signal)
        worker.start()
        assert not acked.wait(0.3), "the ack of a job being watched waits for the watch's commit"
        assert client.exists(f"{driver.settings.base}j:{job_id}"), "the job is not removed meanwhile"
    worker.join(10)
    assert acked.is_set()
    assert [d.id for d in driver.reserve(["later"])] == [dependent.id]
    record = driver.workflow(job_id)
    assert record is not None and (record.kind, record.status) == (ws.JOB, ws.SUCCEEDED)


def test_a_watch_that_does_not_commit_leaves_the_job_plain(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    job_id = _plain_job(driver)
    with pytest.raises(RuntimeError, match="stop"), driver.workflow_transaction() as store:
        ws.create(store, _dependent([job_id]), [])
        assert client.hget(f"{driver.settings.base}j:{job_id}", "v") is not None
        raise RuntimeError("stop")
    assert client.hget(f"{driver.settings.base}j:{job_id}", "v") is None, "the mark is cleared"
    driver.ack(driver.reserve(["q"])[0])
    assert driver.workflow(job_id) is None
    assert driver.stats("q").completed == 1


def test_a_watched_job_cancelled_while_waiting_fails_its_dependent(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    job_id = _plain_job(driver)
    dependent = _watching(driver, job_id)
    assert driver.cancel(job_id) == "removed"
    assert driver.reserve(["q", "later"]) == []
    failed = {f.id: f.error for f in driver.failed(queue="later")}
    assert job_id in failed[dependent.id] and "cancelled" in failed[dependent.id]
    record = driver.workflow(job_id)
    assert record is not None and record.status == ws.CANCELLED


def test_a_running_watched_job_finished_as_cancelled_fails_its_dependent(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    job_id = _plain_job(driver)
    (held,) = driver.reserve(["q"])
    dependent = _watching(driver, job_id)
    assert driver.cancel(job_id) == "requested"
    driver.ack_cancelled(held)
    assert driver.reserve(["q", "later"]) == []
    assert dependent.id in {f.id for f in driver.failed(queue="later")}
    record = driver.workflow(job_id)
    assert record is not None and record.status == ws.CANCELLED
