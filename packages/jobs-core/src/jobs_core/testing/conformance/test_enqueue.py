"""Enqueue: ids, durability across driver instances, bulk, and what survives the round trip."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.message import Message, RetryPolicy
from jobs_core.testing.conformance._helpers import (
    JOB_NAME,
    assert_nothing,
    delivery_timeout,
    enqueue_one,
    ids,
    message,
    messages,
    payloads,
    reserve_one,
    reserve_until,
)
from jobs_core.testing.plugin import DriverFactory, QueueFactory


def test_enqueue_returns_the_message_ids_in_order(jobs_driver: Driver, jobs_queue: str) -> None:
    batch = messages(jobs_queue, 5)
    assert jobs_driver.enqueue(batch) == [m.id for m in batch]


def test_enqueue_of_an_empty_batch_returns_an_empty_list(jobs_driver: Driver, jobs_queue: str) -> None:
    assert jobs_driver.enqueue([]) == []
    assert_nothing(jobs_driver, [jobs_queue])


def test_an_enqueued_message_is_reserved(jobs_driver: Driver, jobs_queue: str) -> None:
    ident = enqueue_one(jobs_driver, message(jobs_queue, {"hello": "world"}))
    delivery = reserve_one(jobs_driver, jobs_queue)
    assert delivery.id == ident
    assert delivery.queue == jobs_queue
    assert delivery.message.name == JOB_NAME
    assert delivery.message.payload == {"hello": "world"}
    assert delivery.message.attempts == 0


def test_fifo_within_one_priority(jobs_driver: Driver, jobs_queue: str) -> None:
    batch = messages(jobs_queue, 20)
    jobs_driver.enqueue(batch[:10])
    for msg in batch[10:]:
        enqueue_one(jobs_driver, msg)
    got = reserve_until(jobs_driver, [jobs_queue], 20, limit=3)
    assert payloads(got) == [{"n": n} for n in range(20)]


def test_a_message_enqueued_by_one_driver_is_reserved_by_another(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    producer, consumer = jobs_driver_factory(), jobs_driver_factory()
    ident = enqueue_one(producer, message(jobs_queue, "shared"))
    producer.close()
    assert reserve_one(consumer, jobs_queue).id == ident


def test_queues_are_independent(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    first, second = jobs_queue_factory(), jobs_queue_factory()
    ident = enqueue_one(jobs_driver, message(first))
    assert_nothing(jobs_driver, [second])
    assert reserve_one(jobs_driver, first).id == ident


def test_one_batch_may_span_several_queues(jobs_driver: Driver, jobs_queue_factory: QueueFactory) -> None:
    first, second = jobs_queue_factory(), jobs_queue_factory()
    batch = [message(first, 1), message(second, 2), message(first, 3)]
    jobs_driver.enqueue(batch)
    assert payloads(reserve_until(jobs_driver, [first], 2)) == [1, 3]
    assert payloads(reserve_until(jobs_driver, [second], 1)) == [2]


def test_bulk_enqueue_of_a_thousand_messages_delivers_each_exactly_once(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    batch = messages(jobs_queue, 1000)
    assert jobs_driver.enqueue(batch) == [m.id for m in batch]
    got = reserve_until(jobs_driver, [jobs_queue], 1000, limit=100, timeout=delivery_timeout() * 3)
    assert len(got) == 1000
    assert sorted(ids(got)) == sorted(m.id for m in batch)
    jobs_driver.ack_many(got)
    assert_nothing(jobs_driver, [jobs_queue])


PAYLOADS = {
    "none": None,
    "unicode": {"text": "héllo wörld ✓ 日本語 \U0001f680", "quote": "\"'\\\n\t\u0000"},
    "nested": {"a": [1, [2, [3, {"b": [None, True, False]}]]], "c": {"d": {"e": {}}}, "f": []},
    "large-ints": [2**63 - 1, -(2**63), 2**64 + 1, 10**30],
    "floats": [0.1, -2.5e-300, 1.7976931348623157e308, 1e-7, 3.0],
    "empty-string": "",
    "list-top-level": [1, "two", 3.0],
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_round_trip(jobs_driver: Driver, jobs_queue: str, payload: object) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, payload))
    got = reserve_one(jobs_driver, jobs_queue).message.payload
    assert got == payload
    assert type(got) is type(payload)
    if isinstance(payload, list):
        assert isinstance(got, list)
        assert [type(v) for v in got] == [type(v) for v in payload]


def test_headers_round_trip(jobs_driver: Driver, jobs_queue: str) -> None:
    headers = {"trace-id": "abc123", "tenant": "ünïcode", "empty": ""}
    enqueue_one(jobs_driver, message(jobs_queue, headers=headers))
    assert dict(reserve_one(jobs_driver, jobs_queue).message.headers) == headers


def test_message_fields_round_trip(jobs_driver: Driver, jobs_queue: str) -> None:
    created = time.time() - 3600.5
    priority = 7 if jobs_driver.supports(Capability.PRIORITY) else 0
    sent = message(
        jobs_queue,
        {"k": "v"},
        max_retries=9,
        retry=RetryPolicy(backoff="fixed", delay=2.5, max_delay=99.0, jitter=False),
        timeout=12.5,
        priority=priority,
        created_at=created,
    )
    enqueue_one(jobs_driver, sent)
    got = reserve_one(jobs_driver, jobs_queue).message
    assert got.id == sent.id
    assert got.name == sent.name
    assert got.max_retries == 9
    assert got.retry == RetryPolicy(backoff="fixed", delay=2.5, max_delay=99.0, jitter=False)
    assert got.timeout == 12.5
    assert got.priority == priority
    assert got.created_at == pytest.approx(created, abs=0.001)
    assert got.available_at == pytest.approx(sent.available_at, abs=0.001)
    assert got.attempts == 0
    assert got.last_error is None


def test_a_message_without_timeout_keeps_none(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, Message(name="conformance.other", queue=jobs_queue, timeout=None))
    got = reserve_one(jobs_driver, jobs_queue).message
    assert got.timeout is None
    assert got.name == "conformance.other"


@pytest.mark.jobs_requires(Capability.IDEMPOTENT_ENQUEUE)
def test_an_enqueue_reusing_an_unfinished_id_stores_nothing_and_returns_the_id(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """A producer that sends again (a lost reply, a restart) gets the job once."""
    first = message(jobs_queue, "first")
    assert jobs_driver.enqueue([first]) == [first.id]
    again = first.replace(payload="second")
    other = message(jobs_queue, "other")
    assert jobs_driver.enqueue([again, other, again]) == [first.id, other.id, first.id]
    got = reserve_until(jobs_driver, [jobs_queue], 3, timeout=2.0)
    assert payloads(got) == ["first", "other"]
    held = got[0]
    # reserved: still the same job, its lease untouched
    assert jobs_driver.enqueue([again]) == [first.id]
    assert jobs_driver.extend(held, 30.0) is True
    assert_nothing(jobs_driver, [jobs_queue])
    jobs_driver.ack(held)
    jobs_driver.ack(got[1])
    # finished: the id may be used again, as a new job
    assert jobs_driver.enqueue([again]) == [first.id]
    back = reserve_one(jobs_driver, jobs_queue)
    assert (back.id, back.message.payload, back.message.attempts) == (first.id, "second", 0)


@pytest.mark.jobs_requires(Capability.IDEMPOTENT_ENQUEUE)
def test_a_large_batch_repeating_a_stored_id_stores_every_other_message(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """However the driver writes a large batch (a streamed COPY, a pipeline), one repeat skips one."""
    stored = message(jobs_queue, "stored")
    enqueue_one(jobs_driver, stored)
    batch = messages(jobs_queue, 300)
    batch[150] = stored.replace(payload="repeat")
    assert jobs_driver.enqueue(batch) == [m.id for m in batch]
    got = reserve_until(jobs_driver, [jobs_queue], 301, limit=100, timeout=3.0)
    assert len(got) == 300
    assert payloads(got)[0] == "stored"
    assert sorted(ids(got)) == sorted(m.id for m in batch)


@pytest.mark.jobs_requires(Capability.IDEMPOTENT_ENQUEUE, Capability.DELAY)
def test_an_enqueue_reusing_the_id_of_a_delayed_or_retried_job_changes_nothing(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    later = message(jobs_queue, "later", available_at=time.time() + 1.0)
    enqueue_one(jobs_driver, later)
    assert jobs_driver.enqueue([later.replace(available_at=time.time(), payload="now")]) == [later.id]
    assert jobs_driver.reserve([jobs_queue], limit=2, lease=30, timeout=0) == []
    first = reserve_one(jobs_driver, jobs_queue, timeout=delivery_timeout() + 1.0)
    assert first.message.payload == "later"
    jobs_driver.retry(first, 1.0, "again")
    assert jobs_driver.enqueue([later.replace(available_at=time.time())]) == [later.id]
    assert jobs_driver.reserve([jobs_queue], limit=2, lease=30, timeout=0) == []
    again = reserve_one(jobs_driver, jobs_queue, timeout=delivery_timeout() + 1.0)
    assert (again.message.attempts, again.message.last_error) == (1, "again")
    jobs_driver.ack(again)
    assert_nothing(jobs_driver, [jobs_queue])


def test_an_enqueue_reusing_an_id_is_accepted_and_the_job_runs(jobs_driver: Driver, jobs_queue: str) -> None:
    """Every driver: sending a message again returns its id and never loses it.

    With ``IDEMPOTENT_ENQUEUE`` it runs once; without, it may run twice, each
    time with the same id (as a redelivery would).
    """
    sent = message(jobs_queue, "twice")
    assert jobs_driver.enqueue([sent]) == [sent.id]
    assert jobs_driver.enqueue([sent]) == [sent.id]
    got = reserve_until(jobs_driver, [jobs_queue], 2, timeout=2.0)
    assert got, "the job was lost"
    assert {(d.id, d.message.payload) for d in got} == {(sent.id, "twice")}
    if jobs_driver.supports(Capability.IDEMPOTENT_ENQUEUE):
        assert len(got) == 1
    jobs_driver.ack_many(got)
