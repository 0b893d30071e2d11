"""Ordering keys on Kafka: the key picks the partition, and one key's jobs run in order, one at a time."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from jobs_core import JobsApp, job
from jobs_core.message import Message
from jobs_kafka import KafkaDriver
from jobs_kafka.partitions import Fetched, PartitionState

from .helpers import reserve_until


def _record(offset: int, key: bytes | None, limit: int = 1) -> Fetched:
    return Fetched("t", 0, offset, b"{}", key, limit)


def test_a_record_waits_behind_its_key_while_other_keys_pass_it() -> None:
    state = PartitionState("t", 0, generation=1)
    for offset, key in enumerate([b"a", b"a", b"b", None, b"a", b"b"]):
        state.add(_record(offset, key))
    taken = []
    while (record := state.pop_runnable()) is not None:
        state.lease(record, f"r{record.offset}", 100.0)
        taken.append(record.offset)
    assert taken == [0, 2, 3]  # a1 waits for a0, b5 for b2; the unkeyed record runs
    assert state.pending_here() == 3
    state.unlease(0)
    state.finish(0)
    nxt = state.pop_runnable()
    assert nxt is not None and nxt.offset == 1
    assert state.pop_runnable() is None  # a4 waits for a1
    state.lease(nxt, "r1", 100.0)
    state.unlease(2)
    state.finish(2)
    assert [state.pop_runnable(), state.pop_runnable()] == [_record(5, b"b"), None]


def test_an_expired_lease_runs_again_before_the_later_records_of_its_key() -> None:
    state = PartitionState("t", 0, generation=1)
    for offset in range(3):
        state.add(_record(offset, b"k", limit=2))
    first = state.pop_runnable()
    assert first is not None
    state.lease(first, "r0", 5.0)
    second = state.pop_runnable()
    assert second is not None
    state.lease(second, "r1", 50.0)
    assert state.pop_runnable() is None  # two of the key run: the third waits
    assert state.expire(now=10.0) == 1
    again = state.pop_runnable()
    assert again == first
    state.lease(again, "r2", 100.0)
    assert state.pop_runnable() is None  # offset 2 still waits: 0 and 1 run
    state.unblock()  # a purge looks at every record, set aside or not
    assert state.blocked == {} and state.pending_here() == 1 and state.returned[0][0] == 2


def test_the_jobs_of_one_key_share_a_partition_and_wait_for_each_other(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver(partitions=4)
    assert driver.join(["keyed"], timeout=30)
    keys = [f"customer-{n}" for n in range(6)]
    driver.enqueue([Message(name="t", payload=n, queue="keyed", key=k) for n in range(3) for k in keys])
    first = reserve_until(driver, ["keyed"], len(keys), timeout=30)
    assert sorted(d.message.key or "" for d in first) == sorted(keys)
    assert all(d.message.payload == 0 for d in first)
    assert driver.reserve(["keyed"], limit=100, lease=60, timeout=1.0) == []  # each key's next waits
    partition_of = {d.message.key: d.handle[1] for d in first}
    assert len(set(partition_of.values())) > 1  # keys spread over the partitions
    runs = {k: [0] for k in keys}
    pending = list(first)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        driver.ack_many(pending)
        pending = driver.reserve(["keyed"], limit=100, lease=60, timeout=1.0)
        for delivery in pending:
            assert delivery.handle[1] == partition_of[delivery.message.key]
            runs[delivery.message.key or ""].append(delivery.message.payload)
    assert runs == {k: [0, 1, 2] for k in keys}


def test_a_bulk_dispatch_with_a_key_goes_to_one_partition_in_order(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    @job(name="kafka.keyed-bulk")
    def keyed(payload: object) -> None:
        """Does nothing."""

    driver = make_driver(partitions=3)
    app = JobsApp(driver.url)
    try:
        app.register(keyed)
        app.dispatch_many(keyed.key("one", concurrency=600), list(range(600)), queue="kb")
    finally:
        app.close()
    got = reserve_until(driver, ["kb"], 600, timeout=30)
    assert [d.message.payload for d in got] == list(range(600))
    assert len({d.handle[1] for d in got}) == 1
    assert {(d.message.key, d.message.key_concurrency) for d in got} == {("one", 600)}


def test_a_worker_at_concurrency_8_runs_each_keys_jobs_in_order_one_at_a_time(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    runs: list[tuple[str, int, float, float]] = []
    lock = threading.Lock()

    @job(name="kafka.keyed-step")
    def step(payload: dict[str, object]) -> None:
        """Records when it ran."""
        started = time.monotonic()
        time.sleep(0.02)
        with lock:
            runs.append((str(payload["key"]), int(str(payload["n"])), started, time.monotonic()))

    driver = make_driver(partitions=2)
    app = JobsApp(driver.url)
    keys = [f"k{n}" for n in range(4)]
    try:
        app.register(step)
        for n in range(8):
            for key in keys:
                app.dispatch(step.key(key), {"key": key, "n": n}, queue="steps")
        worker = app.worker("steps", concurrency=8, max_jobs=32, install_signal_handlers=False)
        thread = threading.Thread(target=worker.run)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), f"the worker ran {len(runs)} of 32 jobs in 60 s"
    finally:
        app.close()
    assert len(runs) == 32
    overlapping_keys = 0
    for key in keys:
        mine = sorted((r for r in runs if r[0] == key), key=lambda r: r[2])
        assert [r[1] for r in mine] == list(range(8)), f"{key} ran out of order"
        for before, after in itertools.pairwise(mine):
            assert after[2] >= before[3], f"{key}: job {after[1]} started before job {before[1]} ended"
        others = [r for r in runs if r[0] != key]
        overlapping_keys += any(o[2] < m[3] and m[2] < o[3] for m in mine for o in others)
    assert overlapping_keys, "no two keys ever ran at once"


def test_a_retried_job_runs_after_the_jobs_of_its_key_that_were_waiting(driver: KafkaDriver) -> None:
    """The documented rule: a failed job is written again behind its key's line."""
    driver.enqueue([Message(name="t", payload=n, queue="again", key="k") for n in range(3)])
    (first,) = reserve_until(driver, ["again"], 1)
    driver.retry(first, 0.0, "boom")
    order: list[tuple[object, int]] = []
    deadline = time.monotonic() + 30
    while len(order) < 3 and time.monotonic() < deadline:
        got = driver.reserve(["again"], limit=10, lease=60, timeout=0.5)
        assert len(got) <= 1
        for delivery in got:
            order.append((delivery.message.payload, delivery.message.attempts))
            driver.ack(delivery)
    assert order == [(1, 0), (2, 0), (0, 1)]
