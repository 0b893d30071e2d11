"""Administration: stats for every state, queue listing, purge and prune with real counts."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.message import QueueStats
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    enqueue_one,
    message,
    messages,
    reserve_one,
    reserve_until,
    stats_become,
    wait_for,
)
from jobs_core.testing.plugin import QueueFactory

stats_required = pytest.mark.jobs_requires(Capability.STATS)


@stats_required
def test_stats_of_a_fresh_queue_are_zero(jobs_driver: Driver, jobs_queue: str) -> None:
    stats = jobs_driver.stats(jobs_queue)
    assert isinstance(stats, QueueStats)
    assert (stats.pending, stats.delayed, stats.reserved, stats.failed) == (0, 0, 0, 0)
    assert stats.completed in (0, None)


@stats_required
def test_stats_count_pending(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 3))
    stats = stats_become(jobs_driver, jobs_queue, pending=3)
    assert (stats.pending, stats.delayed, stats.reserved, stats.failed) == (3, 0, 0, 0)


@stats_required
@pytest.mark.jobs_requires(Capability.DELAY)
def test_stats_count_delayed(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 2, available_at=time.time() + 60))
    jobs_driver.enqueue(messages(jobs_queue, 1))
    stats = stats_become(jobs_driver, jobs_queue, delayed=2, pending=1)
    assert (stats.pending, stats.delayed, stats.reserved) == (1, 2, 0)


@stats_required
def test_stats_count_reserved(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 3))
    reserve_until(jobs_driver, [jobs_queue], 2, limit=2)
    stats = stats_become(jobs_driver, jobs_queue, reserved=2, pending=1)
    assert (stats.pending, stats.reserved) == (1, 2)


@stats_required
def test_a_released_message_counts_as_pending(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    jobs_driver.release(reserve_one(jobs_driver, jobs_queue, lease=30))
    stats = stats_become(jobs_driver, jobs_queue, pending=1, reserved=0)
    assert (stats.pending, stats.reserved) == (1, 0)


@stats_required
def test_stats_count_completed_where_kept(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 2))
    jobs_driver.ack_many(reserve_until(jobs_driver, [jobs_queue], 2))
    if jobs_driver.supports(Capability.COMPLETED_COUNT):
        stats = stats_become(jobs_driver, jobs_queue, completed=2)
        assert stats.completed == 2
    else:
        stats = stats_become(jobs_driver, jobs_queue, pending=0, reserved=0)
        assert stats.completed is None, "a driver that keeps no completed jobs reports None, not a count"
    assert (stats.pending, stats.reserved) == (0, 0)


@stats_required
@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_stats_count_failed(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 2))
    for delivery in reserve_until(jobs_driver, [jobs_queue], 2):
        jobs_driver.fail(delivery, "no")
    stats = stats_become(jobs_driver, jobs_queue, failed=2)
    assert (stats.pending, stats.reserved, stats.failed) == (0, 0, 2)


@stats_required
def test_stats_of_one_queue_ignore_other_queues(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    mine, other = jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue(messages(other, 6))
    jobs_driver.enqueue(messages(mine, 1))
    assert stats_become(jobs_driver, mine, pending=1).pending == 1
    assert stats_become(jobs_driver, other, pending=6).pending == 6
    finished = reserve_until(jobs_driver, [other], 2)
    jobs_driver.ack(finished[0])
    if jobs_driver.supports(Capability.FAILED_STORE):
        jobs_driver.fail(finished[1], "no")
    else:
        jobs_driver.ack(finished[1])
    stats = stats_become(jobs_driver, other, pending=4, reserved=0)
    assert (stats.pending, stats.reserved) == (4, 0)
    if jobs_driver.supports(Capability.FAILED_STORE):
        assert stats_become(jobs_driver, other, failed=1).failed == 1
    if jobs_driver.supports(Capability.COMPLETED_COUNT):
        assert stats_become(jobs_driver, other, completed=1).completed == 1
    mine_now = jobs_driver.stats(mine)
    assert (mine_now.pending, mine_now.reserved, mine_now.failed) == (1, 0, 0)
    assert mine_now.completed in (0, None)


@stats_required
def test_stats_without_a_queue_cover_every_queue(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    first, second = jobs_queue_factory(), jobs_queue_factory()
    before = jobs_driver.stats().pending
    jobs_driver.enqueue(messages(first, 2) + messages(second, 3))
    mine = (
        stats_become(jobs_driver, first, pending=2).pending
        + stats_become(jobs_driver, second, pending=3).pending
    )
    assert mine == 5
    # Other queues of a shared backend may gain waiting jobs meanwhile (a lease
    # left by an earlier run expiring), never lose them: nothing else reserves.
    wait_for(lambda: jobs_driver.stats().pending >= before + 5)
    assert jobs_driver.stats().pending >= before + 5


@stats_required
def test_queues_lists_a_queue_that_held_messages(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    acked, failed = jobs_queue_factory(), jobs_queue_factory()
    enqueue_one(jobs_driver, message(acked))
    assert acked in jobs_driver.queues()
    enqueue_one(jobs_driver, message(failed))
    jobs_driver.ack(reserve_one(jobs_driver, acked))
    if jobs_driver.supports(Capability.FAILED_STORE):
        jobs_driver.fail(reserve_one(jobs_driver, failed), "no")
    # still listed once every job finished (stats of it are still asked for)
    assert {acked, failed} <= set(jobs_driver.queues())


@stats_required
def test_a_message_whose_lease_ran_out_counts_as_pending(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    reserve_one(jobs_driver, jobs_queue, lease=0.3)
    time.sleep(0.5)
    stats = stats_become(jobs_driver, jobs_queue, pending=1, reserved=0)
    assert (stats.pending, stats.reserved) == (1, 0)
    by_queue = jobs_driver.stats_by_queue([jobs_queue])[jobs_queue]
    assert (by_queue.pending, by_queue.reserved) == (1, 0)


@pytest.mark.jobs_requires(Capability.PURGE)
def test_purge_removes_waiting_messages_and_counts_them(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 5))
    assert jobs_driver.purge(jobs_queue) == 5
    assert_nothing(jobs_driver, [jobs_queue])
    assert jobs_driver.purge(jobs_queue) == 0


@pytest.mark.jobs_requires(Capability.PURGE, Capability.DELAY)
def test_purge_removes_delayed_messages_too(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 2, available_at=time.time() + 1.0))
    jobs_driver.enqueue(messages(jobs_queue, 1))
    assert jobs_driver.purge(jobs_queue) == 3
    assert_nothing(jobs_driver, [jobs_queue], wait=2.0)


@pytest.mark.jobs_requires(Capability.PURGE)
def test_purge_leaves_reserved_messages_and_other_queues(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    mine, other = jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue(messages(mine, 3) + messages(other, 2))
    held = reserve_one(jobs_driver, mine)
    assert jobs_driver.purge(mine) == 2
    assert jobs_driver.extend(held, 30.0) is True
    jobs_driver.ack(held)
    assert len(reserve_until(jobs_driver, [other], 2)) == 2


def _finish(driver: Driver, queue: str, acked: int, failed: int) -> int:
    """Ack ``acked`` and fail ``failed`` new messages; return how many records prune should see."""
    driver.enqueue(messages(queue, acked + failed))
    got = reserve_until(driver, [queue], acked + failed)
    assert len(got) == acked + failed
    driver.ack_many(got[:acked])
    for delivery in got[acked:]:
        driver.fail(delivery, "pruned later")
    kept = 0
    if driver.supports(Capability.COMPLETED_COUNT):
        kept += acked
    if driver.supports(Capability.FAILED_STORE):
        kept += failed
    return kept


@pytest.mark.jobs_requires(Capability.PRUNE)
def test_prune_removes_old_records_and_returns_the_real_count(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.prune(0.0)  # the backend may be shared with earlier tests
    expected = _finish(jobs_driver, jobs_queue, acked=3, failed=2)
    assert jobs_driver.prune(60.0) == 0, "records younger than the cutoff must stay"
    time.sleep(0.6)
    assert jobs_driver.prune(0.3) == expected
    assert jobs_driver.prune(0.3) == 0
    if jobs_driver.supports(Capability.FAILED_STORE):
        assert jobs_driver.failed(queue=jobs_queue) == []
    if jobs_driver.supports(Capability.STATS):
        stats = jobs_driver.stats(jobs_queue)
        assert stats.failed == 0
        assert stats.completed in (0, None)


@pytest.mark.jobs_requires(Capability.PRUNE)
def test_prune_keeps_records_younger_than_the_cutoff(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.prune(0.0)
    old = _finish(jobs_driver, jobs_queue, acked=2, failed=1)
    time.sleep(0.6)
    young = _finish(jobs_driver, jobs_queue, acked=1, failed=1)
    assert jobs_driver.prune(0.4) == old
    assert jobs_driver.prune(0.0) == young


@pytest.mark.jobs_requires(Capability.PRUNE)
def test_prune_leaves_unfinished_messages(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.prune(0.0)
    jobs_driver.enqueue(messages(jobs_queue, 2))
    held = reserve_one(jobs_driver, jobs_queue)
    time.sleep(0.3)
    assert jobs_driver.prune(0.0) == 0
    assert jobs_driver.extend(held, 30.0) is True
    assert len(reserve_until(jobs_driver, [jobs_queue], 1)) == 1


@pytest.mark.jobs_requires(Capability.PRUNE)
def test_prune_of_more_than_ten_thousand_finished_jobs_in_one_call(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """One call removes every old record and counts each job once, however many there are."""
    keeps_completed = jobs_driver.supports(Capability.COMPLETED_COUNT)
    if not (keeps_completed or jobs_driver.supports(Capability.FAILED_STORE)):
        pytest.skip("the driver keeps no finished records (neither completed_count nor failed_store)")
    total, batch = 10_050, 1_000
    jobs_driver.prune(0.0)
    for start in range(0, total, batch):
        jobs_driver.enqueue(messages(jobs_queue, min(batch, total - start)))
    # Finished as workers finish them, a few hundred at a time: acked in batches of 4
    # where completed jobs are kept, failed otherwise (and 50 failed either way).
    to_fail = 50 if keeps_completed else total
    finished = 0
    while finished < total:
        got = reserve_until(jobs_driver, [jobs_queue], min(500, total - finished), limit=500)
        assert got, f"only {finished} of {total} jobs arrived"
        failing, got = got[: max(0, to_fail)], got[max(0, to_fail) :]
        for delivery in failing:
            jobs_driver.fail(delivery, "pruned later")
        for start in range(0, len(got), 4):
            jobs_driver.ack_many(got[start : start + 4])
        to_fail -= len(failing)
        finished += len(failing) + len(got)
    time.sleep(0.3)
    assert jobs_driver.prune(0.1) == total
    assert jobs_driver.prune(0.0) == 0
    if jobs_driver.supports(Capability.FAILED_STORE):
        assert jobs_driver.failed(queue=jobs_queue) == []
    if jobs_driver.supports(Capability.STATS):
        stats = jobs_driver.stats(jobs_queue)
        assert (stats.failed, stats.completed) == (0, 0 if keeps_completed else None)


@pytest.mark.jobs_requires(Capability.PURGE)
def test_purge_removes_a_message_whose_lease_ran_out(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    reserve_one(jobs_driver, jobs_queue, lease=0.2)
    time.sleep(0.4)
    assert jobs_driver.purge(jobs_queue) == 1
    assert_nothing(jobs_driver, [jobs_queue])


@stats_required
@pytest.mark.jobs_requires(Capability.DELAY)
def test_stats_by_queue_agree_with_stats_of_each_queue(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    first, second, untouched = jobs_queue_factory(), jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue(messages(first, 3))
    jobs_driver.enqueue(messages(second, 2, available_at=time.time() + 60))
    stats_become(jobs_driver, first, pending=3)
    stats_become(jobs_driver, second, delayed=2)
    by_queue = jobs_driver.stats_by_queue([first, second, untouched])
    assert list(by_queue) == [first, second, untouched]
    assert by_queue[first] == jobs_driver.stats(first)
    assert by_queue[second] == jobs_driver.stats(second)
    assert (by_queue[untouched].pending, by_queue[untouched].delayed) == (0, 0)
    assert sorted(jobs_driver.stats_by_queue()) == sorted(jobs_driver.queues())


@stats_required
def test_stats_by_queue_give_every_count_of_the_queues_asked_for(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    busy, quiet, unasked = jobs_queue_factory(), jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue(messages(unasked, 2))
    jobs_driver.enqueue(messages(busy, 8))
    got = reserve_until(jobs_driver, [busy], 7)
    assert len(got) == 7
    jobs_driver.ack_many(got[:2])
    for delivery in got[2:4]:
        if jobs_driver.supports(Capability.FAILED_STORE):
            jobs_driver.fail(delivery, "no")
        else:
            jobs_driver.ack(delivery)
    jobs_driver.release(got[6])  # waiting again, though its lease had not run out
    stats_become(jobs_driver, busy, pending=2, reserved=2)
    by_queue = jobs_driver.stats_by_queue([busy, quiet])
    assert list(by_queue) == [busy, quiet]
    assert by_queue[busy] == jobs_driver.stats(busy)
    counts = by_queue[busy]
    assert (counts.pending, counts.delayed, counts.reserved) == (2, 0, 2)
    if jobs_driver.supports(Capability.FAILED_STORE):
        assert counts.failed == 2
    if jobs_driver.supports(Capability.COMPLETED_COUNT):
        assert counts.completed == 2
    assert by_queue[quiet] == jobs_driver.stats(quiet)
    assert (by_queue[quiet].pending, by_queue[quiet].reserved, by_queue[quiet].failed) == (0, 0, 0)
