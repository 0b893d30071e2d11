"""Order of delivery: priorities, and queues served in the order given."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.testing.conformance._helpers import message, messages, payloads, reserve_until
from jobs_core.testing.plugin import QueueFactory


@pytest.mark.jobs_requires(Capability.PRIORITY)
def test_higher_priority_is_reserved_first(jobs_driver: Driver, jobs_queue: str) -> None:
    levels = [0, 5, -3, 10, 5, 0, 1]
    jobs_driver.enqueue([message(jobs_queue, {"i": i, "p": p}, priority=p) for i, p in enumerate(levels)])
    got = payloads(reserve_until(jobs_driver, [jobs_queue], len(levels), limit=1))
    assert [p["p"] for p in got] == [10, 5, 5, 1, 0, 0, -3]
    # enqueue order breaks ties within one priority
    assert [p["i"] for p in got] == [3, 1, 4, 6, 0, 5, 2]


@pytest.mark.jobs_requires(Capability.PRIORITY)
def test_a_later_higher_priority_message_overtakes_waiting_ones(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 5))
    jobs_driver.enqueue([message(jobs_queue, "urgent", priority=100)])
    got = payloads(reserve_until(jobs_driver, [jobs_queue], 6, limit=1))
    assert got[0] == "urgent"
    assert got[1:] == [{"n": n} for n in range(5)]


@pytest.mark.jobs_requires(Capability.PRIORITY)
def test_priority_applies_within_a_batch_reservation(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue([message(jobs_queue, p, priority=p) for p in (1, 3, 2)])
    got = payloads(reserve_until(jobs_driver, [jobs_queue], 3, limit=3))
    assert got == [3, 2, 1]


def test_queues_are_served_in_the_order_given(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    low, high = jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue([message(low, f"low-{n}") for n in range(3)])
    jobs_driver.enqueue([message(high, f"high-{n}") for n in range(3)])
    got = payloads(reserve_until(jobs_driver, [high, low], 6, limit=1))
    assert got == ["high-0", "high-1", "high-2", "low-0", "low-1", "low-2"]


def test_a_batch_reservation_takes_from_later_queues_when_earlier_ones_run_dry(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    first, second = jobs_queue_factory(), jobs_queue_factory()
    jobs_driver.enqueue([message(first, "a1"), message(first, "a2")])
    jobs_driver.enqueue([message(second, "b1"), message(second, "b2")])
    got = payloads(reserve_until(jobs_driver, [first, second], 3, limit=3))
    assert got == ["a1", "a2", "b1"]


def test_reserve_returns_at_most_limit(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 10))
    assert reserve_until(jobs_driver, [jobs_queue], 10, limit=4)  # all due
    jobs_driver.enqueue(messages(jobs_queue, 10))
    for _ in range(3):
        assert len(jobs_driver.reserve([jobs_queue], limit=4, lease=60, timeout=2.0)) <= 4


def test_enqueue_order_breaks_ties_between_messages_due_at_the_same_time(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """A bulk dispatch gives every message one due time: they still come out in order."""
    due = time.time() - 1.0
    jobs_driver.enqueue([message(jobs_queue, n, available_at=due, created_at=due) for n in range(6)])
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 6, limit=1)) == list(range(6))
