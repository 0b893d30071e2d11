"""Leases: exclusive under concurrent workers, expiring into redelivery, extended by heartbeats."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.message import Delivery
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    delivery_timeout,
    enqueue_one,
    message,
    messages,
    reserve_one,
    reserve_until,
    stats_become,
)
from jobs_core.testing.plugin import DriverFactory

SHORT_LEASE = 0.5


def test_concurrent_reservers_never_share_a_live_lease(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    total, workers = 300, 4
    jobs_driver_factory().enqueue(messages(jobs_queue, total))
    drivers = [jobs_driver_factory() for _ in range(workers)]
    seen: list[list[Delivery]] = [[] for _ in range(workers)]
    start = threading.Barrier(workers)

    def work(index: int) -> None:
        driver = drivers[index]
        start.wait()
        deadline = time.monotonic() + delivery_timeout() * 3
        while time.monotonic() < deadline and sum(len(s) for s in seen) < total:
            seen[index] += driver.reserve([jobs_queue], limit=7, lease=60, timeout=0.2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(delivery_timeout() * 4)
    counts = Counter(d.id for deliveries in seen for d in deliveries)
    twice = [ident for ident, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} messages were leased to two workers at once"
    assert len(counts) == total


def test_an_expired_lease_makes_the_message_available_again(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, "again"))
    first = reserve_one(jobs_driver, jobs_queue, lease=SHORT_LEASE)
    again = reserve_one(jobs_driver, jobs_queue, lease=30)
    assert again.id == ident
    assert again.receipt != first.receipt
    assert again.message.payload == "again"
    assert again.message.attempts == 0, "a lost lease is not a failed attempt"


def test_a_crashed_workers_message_is_redelivered_to_another_worker(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    crashed, survivor = jobs_driver_factory(), jobs_driver_factory()
    ident = enqueue_one(crashed, message(jobs_queue))
    reserve_one(crashed, jobs_queue, lease=SHORT_LEASE)
    crashed.close()
    assert reserve_one(survivor, jobs_queue).id == ident


def test_extend_keeps_the_message_from_being_redelivered(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    worker, other = jobs_driver_factory(), jobs_driver_factory()
    enqueue_one(worker, message(jobs_queue))
    delivery = reserve_one(worker, jobs_queue, lease=1.0)
    assert worker.extend(delivery, 30.0) is True
    assert_nothing(other, [jobs_queue], wait=1.5)
    assert worker.extend(delivery, 30.0) is True


def test_repeated_heartbeats_hold_a_short_lease(jobs_driver_factory: DriverFactory, jobs_queue: str) -> None:
    worker, other = jobs_driver_factory(), jobs_driver_factory()
    enqueue_one(worker, message(jobs_queue))
    delivery = reserve_one(worker, jobs_queue, lease=1.0)
    for _ in range(5):
        time.sleep(0.3)
        assert worker.extend(delivery, 1.0) is True
        assert other.reserve([jobs_queue], limit=1, lease=30, timeout=0) == []


@pytest.mark.jobs_requires(Capability.LEASE_HANDOFF)
def test_extend_after_the_lease_was_lost_returns_false(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    slow, fast = jobs_driver_factory(), jobs_driver_factory()
    enqueue_one(slow, message(jobs_queue))
    stale = reserve_one(slow, jobs_queue, lease=SHORT_LEASE)
    fresh = reserve_one(fast, jobs_queue, lease=30)
    assert slow.extend(stale, 30.0) is False
    assert fast.extend(fresh, 30.0) is True


def test_extend_of_a_lease_lost_to_the_same_reserver_returns_false(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    stale = reserve_one(jobs_driver, jobs_queue, lease=SHORT_LEASE)
    fresh = reserve_one(jobs_driver, jobs_queue, lease=30)
    assert fresh.receipt != stale.receipt
    assert jobs_driver.extend(stale, 30.0) is False
    assert jobs_driver.extend(fresh, 30.0) is True


def test_ack_finishes_the_message(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue, lease=SHORT_LEASE))
    assert_nothing(jobs_driver, [jobs_queue], wait=SHORT_LEASE * 2)


def test_ack_is_idempotent(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    delivery = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.ack(delivery)
    jobs_driver.ack(delivery)
    jobs_driver.ack_many([delivery])
    assert_nothing(jobs_driver, [jobs_queue])
    if jobs_driver.supports(Capability.COMPLETED_COUNT):
        assert stats_become(jobs_driver, jobs_queue, completed=1).completed == 1


def test_ack_many_finishes_every_delivery(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 5))
    got = reserve_until(jobs_driver, [jobs_queue], 5, lease=SHORT_LEASE)
    jobs_driver.ack_many(got)
    assert_nothing(jobs_driver, [jobs_queue], wait=SHORT_LEASE * 2)


def _stale_receipt_is_ignored(slow: Driver, fast: Driver, jobs_queue: str, operation: str) -> None:
    enqueue_one(slow, message(jobs_queue, "mine"))
    stale = reserve_one(slow, jobs_queue, lease=SHORT_LEASE)
    fresh = reserve_one(fast, jobs_queue, lease=30)
    if operation == "ack":
        slow.ack(stale)
    elif operation == "retry":
        slow.retry(stale, 0.0, "stale retry")
    elif operation == "fail":
        slow.fail(stale, "stale failure")
    else:
        slow.release(stale)
    # the live lease is untouched: still held, not handed out again, not failed
    assert fast.extend(fresh, 30.0) is True
    assert_nothing(slow, [jobs_queue])
    if fast.supports(Capability.FAILED_STORE):
        assert fast.failed(queue=jobs_queue) == []
    fast.ack(fresh)
    if fast.supports(Capability.COMPLETED_COUNT):
        assert stats_become(fast, jobs_queue, completed=1).completed == 1


@pytest.mark.jobs_requires(Capability.LEASE_HANDOFF)
@pytest.mark.parametrize("operation", ["ack", "retry", "fail", "release"])
def test_a_stale_receipt_is_ignored(
    jobs_driver_factory: DriverFactory, jobs_queue: str, operation: str
) -> None:
    _stale_receipt_is_ignored(jobs_driver_factory(), jobs_driver_factory(), jobs_queue, operation)


@pytest.mark.parametrize("operation", ["ack", "retry", "fail", "release"])
def test_a_stale_receipt_is_ignored_by_the_same_reserver(
    jobs_driver: Driver, jobs_queue: str, operation: str
) -> None:
    _stale_receipt_is_ignored(jobs_driver, jobs_driver, jobs_queue, operation)


@pytest.mark.parametrize("operation", ["ack", "retry", "fail", "release", "extend"])
def test_an_operation_on_an_ended_lease_takes_effect_whole_or_not_at_all(
    jobs_driver_factory: DriverFactory, jobs_queue: str, operation: str
) -> None:
    """Between the end of a lease and the next reserve, the old holder's call is a race.

    A driver may honour it (the job finished late is not run again) or ignore
    it (as for a lost lease); either way the job is never both finished and
    handed out again, never handed out twice, and once another reserve took
    it, the old receipt changes nothing.
    """
    slow = jobs_driver_factory()
    # Without LEASE_HANDOFF an ended lease frees the message for its own process only.
    other = jobs_driver_factory() if slow.supports(Capability.LEASE_HANDOFF) else slow
    ident = enqueue_one(slow, message(jobs_queue, "late"))
    stale = reserve_one(slow, jobs_queue, lease=SHORT_LEASE)
    time.sleep(SHORT_LEASE + 0.3)
    extended = None
    if operation == "ack":
        slow.ack(stale)
    elif operation == "retry":
        slow.retry(stale, 0.0, "late retry")
    elif operation == "fail":
        slow.fail(stale, "late failure")
    elif operation == "release":
        slow.release(stale)
    else:
        extended = slow.extend(stale, 30.0)
        assert isinstance(extended, bool)
    got = reserve_until(other, [jobs_queue], 2, lease=30, timeout=2.0)
    assert len(got) <= 1, "the job was handed out twice"
    failed = []
    if other.supports(Capability.FAILED_STORE):
        failed = [f.id for f in other.failed(queue=jobs_queue)]
    if operation in ("ack", "fail") or extended:
        # finished (or held again) by the late call, or not: never both
        assert len(got) + len(failed) <= 1
        if extended:
            assert got == [], "extend returned True, yet the job went to another worker"
            assert slow.extend(stale, 30.0) is True
            return
    else:
        assert len(got) == 1, "the job is neither held nor available"
        assert failed == []
    if operation == "fail" and other.supports(Capability.FAILED_STORE):
        assert len(got) + len(failed) == 1, "the job is neither failed nor available"
        assert failed in ([], [ident])
    if got:
        fresh = got[0]
        assert fresh.id == ident
        assert fresh.message.attempts in ((0, 1) if operation == "retry" else (0,))
        # the old receipt no longer changes anything
        slow.ack(stale)
        slow.fail(stale, "stale")
        assert slow.extend(stale, 30.0) is False
        assert other.extend(fresh, 30.0) is True
        other.ack(fresh)
    assert_nothing(other, [jobs_queue])


def test_a_message_whose_lease_ended_keeps_its_place_in_line(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 3))
    reserve_one(jobs_driver, jobs_queue, lease=SHORT_LEASE)
    time.sleep(SHORT_LEASE + 0.2)
    got = reserve_until(jobs_driver, [jobs_queue], 3, limit=1)
    assert [d.message.payload for d in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
