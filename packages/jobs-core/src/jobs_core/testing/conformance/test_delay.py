"""Delayed messages: held until due, delivered soon after, never blocking due ones."""

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

pytestmark = pytest.mark.jobs_requires(Capability.DELAY)

DELAY = 1.5


def test_a_delayed_message_is_not_delivered_before_it_is_due(jobs_driver: Driver, jobs_queue: str) -> None:
    due = time.time() + DELAY
    enqueue_one(jobs_driver, message(jobs_queue, "later", available_at=due))
    assert_nothing(jobs_driver, [jobs_queue], wait=DELAY / 2)
    delivery = reserve_one(jobs_driver, jobs_queue)
    assert time.time() >= due - 0.01
    assert delivery.message.payload == "later"


def test_a_delayed_message_is_delivered_soon_after_it_is_due(jobs_driver: Driver, jobs_queue: str) -> None:
    due = time.time() + 0.5
    enqueue_one(jobs_driver, message(jobs_queue, "soon", available_at=due))
    reserve_one(jobs_driver, jobs_queue, timeout=5.0)
    assert time.time() - due < 5.0


def test_a_delayed_message_does_not_hold_up_due_ones(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "later", available_at=time.time() + 60))
    enqueue_one(jobs_driver, message(jobs_queue, "now"))
    got = reserve_until(jobs_driver, [jobs_queue], 2, timeout=2.0)
    assert payloads(got) == ["now"]


def test_delayed_messages_come_out_in_due_order(jobs_driver: Driver, jobs_queue: str) -> None:
    now = time.time()
    jobs_driver.enqueue(
        [
            message(jobs_queue, "second", available_at=now + 0.8),
            message(jobs_queue, "first", available_at=now + 0.4),
        ]
    )
    got = reserve_until(jobs_driver, [jobs_queue], 2, limit=1)
    assert payloads(got) == ["first", "second"]


def test_a_message_due_in_the_past_is_delivered_at_once(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "overdue", available_at=time.time() - 3600))
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "overdue"
