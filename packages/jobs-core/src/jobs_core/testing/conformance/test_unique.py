"""Unique keys: a duplicate is dropped while the first is unfinished, and accepted after."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    enqueue_one,
    message,
    payloads,
    reserve_one,
    reserve_until,
)
from jobs_core.testing.plugin import DriverFactory, QueueFactory

pytestmark = pytest.mark.jobs_requires(Capability.UNIQUE)


def test_a_duplicate_is_dropped_while_the_first_is_pending(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    first = message(jobs_queue, "first", unique_key=key)
    assert jobs_driver.enqueue([first]) == [first.id]
    assert jobs_driver.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 2, timeout=1.5)) == ["first"]


def test_a_duplicate_is_dropped_while_the_first_is_reserved(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    reserve_one(jobs_driver, jobs_queue)
    assert jobs_driver.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]
    assert_nothing(jobs_driver, [jobs_queue])


def test_a_duplicate_is_dropped_while_the_first_waits_for_a_retry(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, "again")
    assert jobs_driver.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]


def test_the_key_is_free_again_after_ack(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue))
    second = message(jobs_queue, "second", unique_key=key)
    assert jobs_driver.enqueue([second]) == [second.id]
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "second"


def test_the_key_is_free_again_after_fail(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "broken")
    second = message(jobs_queue, "second", unique_key=key)
    assert jobs_driver.enqueue([second]) == [second.id]


def test_the_key_is_free_again_after_its_ttl(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key, unique_ttl=0.3))
    time.sleep(0.6)
    second = message(jobs_queue, "second", unique_key=key)
    assert jobs_driver.enqueue([second]) == [second.id]
    assert sorted(payloads(reserve_until(jobs_driver, [jobs_queue], 2))) == ["first", "second"]


def test_a_duplicate_within_one_batch_is_dropped(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    first, second = message(jobs_queue, 1, unique_key=key), message(jobs_queue, 2, unique_key=key)
    plain = message(jobs_queue, 3)
    assert jobs_driver.enqueue([first, second, plain]) == [first.id, None, plain.id]
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 3, timeout=1.5)) == [1, 3]


def test_different_keys_do_not_collide(jobs_driver: Driver, jobs_queue: str) -> None:
    batch = [message(jobs_queue, n, unique_key=f"{jobs_queue}-{n}") for n in range(3)]
    assert jobs_driver.enqueue(batch) == [m.id for m in batch]


def test_the_key_is_held_across_driver_instances(jobs_driver_factory: DriverFactory, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    one, two = jobs_driver_factory(), jobs_driver_factory()
    enqueue_one(one, message(jobs_queue, "first", unique_key=key))
    assert two.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]


def test_a_key_is_held_across_queues(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    """Unique keys are global to the backend, not per queue."""
    first, second = jobs_queue_factory(), jobs_queue_factory()
    key = f"report-{first}"
    enqueue_one(jobs_driver, message(first, "first", unique_key=key))
    assert jobs_driver.enqueue([message(second, "second", unique_key=key)]) == [None]
    assert_nothing(jobs_driver, [second])


def test_the_key_is_held_while_a_lease_runs_out(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    reserve_one(jobs_driver, jobs_queue, lease=0.3)
    time.sleep(0.5)
    assert jobs_driver.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 2, timeout=1.5)) == ["first"]


@pytest.mark.jobs_requires(Capability.PURGE)
def test_the_key_is_free_again_after_purge(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key))
    assert jobs_driver.purge(jobs_queue) == 1
    second = message(jobs_queue, "second", unique_key=key)
    assert jobs_driver.enqueue([second]) == [second.id]
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 2, timeout=1.5)) == ["second"]


def test_a_key_with_a_ttl_is_held_until_the_ttl_passes(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "first", unique_key=key, unique_ttl=30.0))
    assert jobs_driver.enqueue([message(jobs_queue, "second", unique_key=key)]) == [None]


def test_a_key_taken_over_after_its_ttl_stays_with_the_new_holder(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """The old holder finishing later does not free the key its successor holds."""
    key = f"report-{jobs_queue}"
    enqueue_one(jobs_driver, message(jobs_queue, "old", unique_key=key, unique_ttl=0.3))
    old = reserve_one(jobs_driver, jobs_queue)
    time.sleep(0.5)
    new = message(jobs_queue, "new", unique_key=key)
    assert jobs_driver.enqueue([new]) == [new.id]
    jobs_driver.ack(old)
    assert jobs_driver.enqueue([message(jobs_queue, "third", unique_key=key)]) == [None]
    jobs_driver.ack(reserve_one(jobs_driver, jobs_queue))
    last = message(jobs_queue, "last", unique_key=key)
    assert jobs_driver.enqueue([last]) == [last.id]


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_a_job_put_back_by_retry_failed_holds_no_key(jobs_driver: Driver, jobs_queue: str) -> None:
    """The key was freed when the job failed, and may have a new holder: the retried job does not take it."""
    key = f"report-{jobs_queue}"
    ident = enqueue_one(jobs_driver, message(jobs_queue, "failed", unique_key=key))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "no")
    assert jobs_driver.retry_failed(ident) is True
    fresh = message(jobs_queue, "fresh", unique_key=key)
    assert jobs_driver.enqueue([fresh]) == [fresh.id]
    assert sorted(payloads(reserve_until(jobs_driver, [jobs_queue], 2))) == ["failed", "fresh"]


@pytest.mark.jobs_requires(Capability.IDEMPOTENT_ENQUEUE)
def test_an_enqueue_repeating_a_key_holders_id_returns_the_id(jobs_driver: Driver, jobs_queue: str) -> None:
    """A repeat of the job that holds the key is that job (its id), not a duplicate dropped (``None``)."""
    held = message(jobs_queue, "held", unique_key=f"report-{jobs_queue}")
    assert jobs_driver.enqueue([held]) == [held.id]
    assert jobs_driver.enqueue([held]) == [held.id]
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 2, timeout=1.5)) == ["held"]
