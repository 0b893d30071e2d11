"""Ordering keys: every driver keeps a message's key; ORDERED_KEYS drivers order by it.

A driver with :attr:`~jobs_core.driver.Capability.ORDERED_KEYS` hands out the
messages of one key in the order they were stored, at most their
``key_concurrency`` at once, while the messages of other keys behind them
are handed out meanwhile. Every driver stores the key and gives it back.
"""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError
from jobs_core.message import Delivery
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    enqueue_one,
    message,
    reserve_one,
    reserve_until,
)


def _label(delivery: Delivery) -> str:
    return f"{delivery.message.key}{delivery.message.payload}"


def test_the_key_and_its_concurrency_come_back_with_the_message(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, 1, key="customer-42", key_concurrency=3))
    got = reserve_one(jobs_driver, jobs_queue).message
    assert (got.key, got.key_concurrency) == ("customer-42", 3)
    enqueue_one(jobs_driver, message(jobs_queue, 2))
    plain = reserve_one(jobs_driver, jobs_queue).message
    assert (plain.key, plain.key_concurrency) == (None, 1)


def test_a_retried_message_keeps_its_key(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "x", key="ü-k€y", key_concurrency=2))
    jobs_driver.retry(reserve_one(jobs_driver, jobs_queue), 0.0, "again")
    again = reserve_one(jobs_driver, jobs_queue).message
    assert (again.key, again.key_concurrency, again.attempts) == ("ü-k€y", 2, 1)


@pytest.mark.jobs_requires(Capability.DELAY)
def test_a_delayed_message_keeps_its_key(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "later", key="k", available_at=time.time() + 0.5))
    assert reserve_one(jobs_driver, jobs_queue).message.key == "k"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"key": ""}, "message key"),
        ({"key": "k" * 256}, "message key"),
        ({"key": 42}, "message key"),
        ({"key": "k", "key_concurrency": 0}, "key_concurrency"),
        ({"key_concurrency": 2}, "without a key"),
    ],
    ids=["empty", "too-long", "not-a-string", "concurrency-0", "concurrency-without-key"],
)
def test_a_bad_key_is_refused_and_nothing_is_stored(
    jobs_driver: Driver, jobs_queue: str, fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        jobs_driver.enqueue([message(jobs_queue, "good"), message(jobs_queue, "bad", **fields)])
    assert_nothing(jobs_driver, [jobs_queue], wait=0.2)


@pytest.mark.jobs_requires(Capability.ORDERED_KEYS)
def test_one_message_of_a_key_at_a_time_and_other_keys_run_meanwhile(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    jobs_driver.enqueue([message(jobs_queue, n, key=key) for n in range(3) for key in ("a", "b")])
    first = reserve_until(jobs_driver, [jobs_queue], 2, limit=10)
    assert sorted(map(_label, first)) == ["a0", "b0"]
    assert_nothing(jobs_driver, [jobs_queue])  # a1 and b1 wait for a0 and b0
    jobs_driver.ack(next(d for d in first if d.message.key == "a"))
    assert _label(reserve_one(jobs_driver, jobs_queue)) == "a1"
    assert_nothing(jobs_driver, [jobs_queue])


@pytest.mark.jobs_requires(Capability.ORDERED_KEYS)
def test_messages_of_a_key_run_in_order_whatever_else_is_waiting(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    jobs_driver.enqueue([message(jobs_queue, n, key="k") for n in range(5)])
    jobs_driver.enqueue([message(jobs_queue, "plain")])
    seen: list[object] = []
    while len(seen) < 6:
        got = reserve_until(jobs_driver, [jobs_queue], 6, limit=10, timeout=2.0)
        assert got, f"nothing more arrived after {seen}"
        seen += [d.message.payload for d in got]
        jobs_driver.ack_many(got)
    assert [p for p in seen if p != "plain"] == [0, 1, 2, 3, 4]


@pytest.mark.jobs_requires(Capability.ORDERED_KEYS)
def test_key_concurrency_lets_that_many_run_at_once(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue([message(jobs_queue, n, key="k", key_concurrency=2) for n in range(4)])
    running = reserve_until(jobs_driver, [jobs_queue], 2, limit=10)
    assert [d.message.payload for d in running] == [0, 1]
    assert_nothing(jobs_driver, [jobs_queue])
    jobs_driver.ack(running[1])
    assert reserve_one(jobs_driver, jobs_queue).message.payload == 2
    assert_nothing(jobs_driver, [jobs_queue])


@pytest.mark.jobs_requires(Capability.ORDERED_KEYS)
def test_a_released_message_runs_before_the_later_ones_of_its_key(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    jobs_driver.enqueue([message(jobs_queue, n, key="k") for n in range(3)])
    jobs_driver.release(reserve_one(jobs_driver, jobs_queue))
    assert reserve_one(jobs_driver, jobs_queue).message.payload == 0


@pytest.mark.jobs_requires(Capability.ORDERED_KEYS)
def test_a_lease_that_runs_out_frees_its_key(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue([message(jobs_queue, n, key="k") for n in range(2)])
    reserve_one(jobs_driver, jobs_queue, lease=0.5)
    again = reserve_one(jobs_driver, jobs_queue)  # the same message, once its lease ran out
    assert again.message.payload == 0
    jobs_driver.ack(again)
    assert reserve_one(jobs_driver, jobs_queue).message.payload == 1
