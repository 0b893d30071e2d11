"""Retry, release and fail: attempts, errors, delays and the failed store."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.testing.conformance._helpers import (
    JOB_NAME,
    assert_nothing,
    enqueue_one,
    message,
    payloads,
    reserve_one,
    reserve_until,
)
from jobs_core.testing.plugin import QueueFactory

TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3\nValueError: boom ✗'


def test_retry_counts_an_attempt_and_records_the_error(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, {"keep": [1, 2]}, max_retries=5))
    jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, "ValueError: first")
    again = reserve_one(jobs_driver, jobs_queue)
    assert again.id == ident
    assert again.message.attempts == 1
    assert again.message.last_error == "ValueError: first"
    assert again.message.payload == {"keep": [1, 2]}
    assert again.message.max_retries == 5


def test_each_retry_counts_one_more_attempt(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    for attempt in range(1, 4):
        jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, f"error {attempt}")
    final = reserve_one(jobs_driver, jobs_queue).message
    assert final.attempts == 3
    assert final.last_error == "error 3"


@pytest.mark.jobs_requires(Capability.DELAY)
def test_retry_with_a_delay_holds_the_message_until_due(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue)
    retried_at = time.time()  # the delay counts from the call, however long it takes
    jobs_driver.retry(held, 1.5, "later")
    assert_nothing(jobs_driver, [jobs_queue], wait=0.8)
    again = reserve_one(jobs_driver, jobs_queue)
    assert time.time() >= retried_at + 1.5 - 0.05
    assert again.message.attempts == 1
    assert again.message.available_at >= retried_at + 1.5 - 0.05, "the delivered message says when it was due"


def test_a_retried_message_goes_behind_the_waiting_ones(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "first"))
    first = reserve_one(jobs_driver, jobs_queue)
    enqueue_one(jobs_driver, message(jobs_queue, "second"))
    jobs_driver.retry(first, 0.0, "again")
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "second"
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "first"


def test_release_gives_the_message_back_without_counting_an_attempt(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, "unrun"))
    jobs_driver.release(reserve_one(jobs_driver, jobs_queue))
    again = reserve_one(jobs_driver, jobs_queue)
    assert again.id == ident
    assert again.message.attempts == 0
    assert again.message.last_error is None
    assert again.message.payload == "unrun"


@pytest.mark.jobs_requires(Capability.DELAY)
def test_release_with_a_delay_holds_the_message(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    held = reserve_one(jobs_driver, jobs_queue)
    released_at = time.time()  # the delay counts from the call, however long it takes
    jobs_driver.release(held, delay=1.5)
    assert_nothing(jobs_driver, [jobs_queue], wait=0.8)
    again = reserve_one(jobs_driver, jobs_queue)
    assert time.time() >= released_at + 1.5 - 0.05
    assert again.message.attempts == 0
    assert again.message.available_at >= released_at + 1.5 - 0.05, (
        "the delivered message says when it was due"
    )


def test_a_failed_message_is_not_delivered_again(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue, lease=0.5), "gave up")
    assert_nothing(jobs_driver, [jobs_queue], wait=1.0)


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_fail_keeps_the_job_in_the_failed_store_with_the_error(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, {"order": 42}))
    delivery = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.retry(delivery, 0.0, "first try")
    before = time.time()
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), TRACEBACK)
    (entry,) = jobs_driver.failed(queue=jobs_queue)
    assert entry.id == ident
    assert entry.name == JOB_NAME
    assert entry.queue == jobs_queue
    assert entry.payload == {"order": 42}
    assert entry.attempts == 2
    assert TRACEBACK in entry.error
    assert before - 1.0 <= entry.failed_at <= time.time() + 1.0
    if entry.message is not None:  # the message as it failed
        assert (entry.message.attempts, entry.message.last_error) == (2, TRACEBACK)


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_failed_lists_newest_first_with_limit_and_offset(jobs_driver: Driver, jobs_queue: str) -> None:
    for n in range(4):
        enqueue_one(jobs_driver, message(jobs_queue, n))
        jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), f"error {n}")
        time.sleep(0.01)
    assert [f.payload for f in jobs_driver.failed(queue=jobs_queue)] == [3, 2, 1, 0]
    assert [f.payload for f in jobs_driver.failed(limit=2, queue=jobs_queue)] == [3, 2]
    assert [f.payload for f in jobs_driver.failed(limit=2, offset=2, queue=jobs_queue)] == [1, 0]


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_failed_filters_by_queue(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    first, second = jobs_queue_factory(), jobs_queue_factory()
    for queue in (first, second):
        enqueue_one(jobs_driver, message(queue, queue))
        jobs_driver.fail(reserve_one(jobs_driver, queue), "no")
    assert [f.payload for f in jobs_driver.failed(queue=first)] == [first]
    assert [f.payload for f in jobs_driver.failed(queue=second)] == [second]
    everything = {f.id for f in jobs_driver.failed(limit=1000)}
    assert {f.id for f in jobs_driver.failed(queue=first) + jobs_driver.failed(queue=second)} <= everything


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_retry_failed_puts_the_job_back_with_its_attempts_reset(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, "again", max_retries=2))
    jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, "one")
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "two")
    assert jobs_driver.retry_failed(ident) is True
    if jobs_driver.supports(Capability.FAILED_STORE):
        assert jobs_driver.failed(queue=jobs_queue) == []
    back = reserve_one(jobs_driver, jobs_queue)
    assert back.id == ident
    assert back.queue == jobs_queue
    assert back.message.attempts == 0
    assert back.message.payload == "again"
    assert back.message.max_retries == 2
    assert jobs_driver.retry_failed(ident) is False


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_a_job_put_back_by_retry_failed_goes_behind_the_waiting_ones(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, "failed first"))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "no")
    enqueue_one(jobs_driver, message(jobs_queue, "waiting"))
    assert jobs_driver.retry_failed(ident) is True
    got = reserve_until(jobs_driver, [jobs_queue], 2, limit=1)
    assert payloads(got) == ["waiting", "failed first"]


@pytest.mark.jobs_requires(Capability.RETRY_FAILED)
def test_retry_failed_of_an_unknown_id_returns_false(jobs_driver: Driver) -> None:
    assert jobs_driver.retry_failed("0123456789abcdef0123456789abcdef") is False


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_forget_failed_deletes_one_entry(jobs_driver: Driver, jobs_queue: str) -> None:
    keep = enqueue_one(jobs_driver, message(jobs_queue, "keep"))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "a")
    drop = enqueue_one(jobs_driver, message(jobs_queue, "drop"))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "b")
    assert jobs_driver.forget_failed(drop) is True
    assert jobs_driver.forget_failed(drop) is False
    assert [f.id for f in jobs_driver.failed(queue=jobs_queue)] == [keep]


def test_a_released_message_keeps_its_place_in_line(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "first"))
    held = reserve_one(jobs_driver, jobs_queue)
    enqueue_one(jobs_driver, message(jobs_queue, "second"))
    jobs_driver.release(held)
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "first"
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "second"


@pytest.mark.jobs_requires(Capability.DELAY)
def test_a_message_released_with_a_delay_goes_behind_the_waiting_ones(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "first"))
    held = reserve_one(jobs_driver, jobs_queue)
    jobs_driver.release(held, delay=0.3)
    enqueue_one(jobs_driver, message(jobs_queue, "second"))
    time.sleep(0.5)
    got = reserve_until(jobs_driver, [jobs_queue], 2, limit=1)
    assert [d.message.payload for d in got] == ["second", "first"]


def test_a_retry_without_delay_is_due_at_once(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "again"))
    jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, "now")
    got = reserve_until(jobs_driver, [jobs_queue], 1, timeout=0.7 + jobs_driver.reserve_settle_time)
    assert payloads(got) == ["again"], "a retry with no delay was held back"


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_failed_lists_fifty_by_default(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue([message(jobs_queue, n) for n in range(51)])
    for delivery in reserve_until(jobs_driver, [jobs_queue], 51):
        jobs_driver.fail(delivery, "no")
    assert len(jobs_driver.failed(queue=jobs_queue, limit=100)) == 51
    assert len(jobs_driver.failed(queue=jobs_queue)) == 50
    assert jobs_driver.failed(queue=jobs_queue, limit=0) == []


@pytest.mark.jobs_requires(Capability.FAILED_STORE)
def test_a_job_failing_again_under_its_id_is_listed_once_as_the_newest(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    first = message(jobs_queue, "first")
    enqueue_one(jobs_driver, first)
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "first failure")
    enqueue_one(jobs_driver, message(jobs_queue, "other"))
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "other failure")
    enqueue_one(jobs_driver, first.replace(payload="second"))  # the id is free once it failed
    jobs_driver.fail(reserve_one(jobs_driver, jobs_queue), "second failure")
    listed = jobs_driver.failed(queue=jobs_queue)
    assert [f.payload for f in listed] == ["second", "other"]
    assert listed[0].id == first.id and "second failure" in listed[0].error
