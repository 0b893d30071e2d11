"""Workflow transactions on Redis: record locks, and what a commit checks before it writes."""

from __future__ import annotations

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
