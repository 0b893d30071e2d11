"""Reserve: empty queues, waiting for work, waking early, and what a delivery carries."""

from __future__ import annotations

import threading
import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.message import Delivery
from jobs_core.testing.conformance._helpers import assert_nothing, enqueue_one, message, reserve_one
from jobs_core.testing.plugin import DriverFactory


def test_reserve_on_an_empty_queue_returns_an_empty_list(jobs_driver: Driver, jobs_queue: str) -> None:
    started = time.monotonic()
    assert jobs_driver.reserve([jobs_queue], limit=10, lease=30, timeout=0) == []
    assert time.monotonic() - started < 5.0


def test_reserve_with_a_timeout_waits_about_that_long_for_nothing(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    started = time.monotonic()
    assert jobs_driver.reserve([jobs_queue], limit=1, lease=30, timeout=1.0) == []
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 6.0


@pytest.mark.jobs_requires(Capability.BLOCKING_RESERVE)
def test_a_blocking_reserve_wakes_early_when_work_arrives(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    consumer, producer = jobs_driver_factory(), jobs_driver_factory()
    result: list[list[Delivery]] = []
    elapsed: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        result.append(consumer.reserve([jobs_queue], limit=1, lease=30, timeout=20.0))
        elapsed.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    ident = enqueue_one(producer, message(jobs_queue, "wake"))
    thread.join(25.0)
    assert not thread.is_alive()
    assert [d.id for d in result[0]] == [ident]
    assert elapsed[0] < 10.0


def test_a_delivery_carries_its_lease(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    before = time.time()
    delivery = reserve_one(jobs_driver, jobs_queue, lease=45.0)
    after = time.time()
    assert isinstance(delivery, Delivery)
    assert delivery.receipt
    assert before + 45.0 - 1.0 <= delivery.lease_expires_at <= after + 45.0 + 1.0


def test_each_delivery_gets_its_own_receipt(jobs_driver: Driver, jobs_queue: str) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    first = reserve_one(jobs_driver, jobs_queue, lease=0.3)
    second = reserve_one(jobs_driver, jobs_queue, lease=30)
    assert second.id == first.id
    assert second.receipt != first.receipt


def test_a_reserved_message_is_not_handed_out_again_while_leased(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    enqueue_one(jobs_driver, message(jobs_queue))
    reserve_one(jobs_driver, jobs_queue, lease=30)
    assert_nothing(jobs_driver, [jobs_queue], wait=1.0)
