"""Lifecycle and declarations: close, use after close, capabilities and unsupported operations."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.errors import DriverClosed, UnsupportedOperation
from jobs_core.message import Delivery, ScheduleRecord
from jobs_core.testing.conformance._helpers import enqueue_one, message, reserve_one
from jobs_core.testing.plugin import DriverFactory
from jobs_core.urls import base_scheme, url_scheme

Operation = Callable[[Driver, str], object]

#: For each optional capability, calls that a driver without it must refuse.
OPERATIONS: dict[Capability, list[Operation]] = {
    Capability.DELAY: [lambda d, q: d.enqueue([message(q, available_at=time.time() + 60)])],
    Capability.PRIORITY: [lambda d, q: d.enqueue([message(q, priority=5)])],
    Capability.UNIQUE: [lambda d, q: d.enqueue([message(q, unique_key=f"{q}-key")])],
    Capability.FAILED_STORE: [lambda d, q: d.failed(), lambda d, q: d.forget_failed("0" * 32)],
    Capability.RETRY_FAILED: [lambda d, q: d.retry_failed("0" * 32)],
    Capability.STATS: [lambda d, q: d.stats(q), lambda d, q: d.stats(), lambda d, q: d.queues()],
    Capability.PURGE: [lambda d, q: d.purge(q)],
    Capability.PRUNE: [lambda d, q: d.prune(3600.0)],
    Capability.RAW_INJECTION: [lambda d, q: d.inject_raw(q, b"{}")],
    Capability.TRANSACTIONAL_ENQUEUE: [lambda d, q: d.enqueue_in(None, [message(q)])],
    Capability.SCHEDULES: [
        lambda d, q: d.save_schedule(ScheduleRecord(name=q, data={})),
        lambda d, q: d.schedules(),
        lambda d, q: d.remove_schedule(q),
        lambda d, q: d.claim_tick(q, time.time()),
        lambda d, q: d.advance_schedule(q, None, time.time()),
    ],
    Capability.STATUS: [
        lambda d, q: d.job_status("0" * 32),
        lambda d, q: d.ack_results([Delivery(message(q), "r", 0.0)], [None]),
    ],
    Capability.PROGRESS: [lambda d, q: d.save_progress(Delivery(message(q), "r", 0.0), None, "w")],
    Capability.CANCEL: [
        lambda d, q: d.cancel("0" * 32),
        lambda d, q: d.cancel_requested([Delivery(message(q), "r", 0.0)]),
        lambda d, q: d.ack_cancelled(Delivery(message(q), "r", 0.0)),
    ],
    Capability.WORKFLOWS: [
        lambda d, q: d.workflow_transaction().__enter__(),
        lambda d, q: d.workflow("0" * 32),
        lambda d, q: d.workflows(),
    ],
    Capability.QUEUE_PAUSE: [
        lambda d, q: d.pause_queue(q),
        lambda d, q: d.resume_queue(q),
        lambda d, q: d.paused_queues(),
    ],
    Capability.RATE_LIMITS: [lambda d, q: d.take_tokens(q, 1, 1.0)],
    Capability.JOB_LISTING: [lambda d, q: d.list_jobs("queued", q)],
    Capability.WORKERS: [
        lambda d, q: d.workers(),
        lambda d, q: d.remove_worker("0" * 32),
    ],
    Capability.CONCURRENCY_LIMITS: [
        lambda d, q: d.acquire_slot(q, 1, "holder", 1.0),
        lambda d, q: d.extend_slot(q, "holder", 1.0),
        lambda d, q: d.release_slot(q, "holder"),
    ],
}

#: Capabilities that change how required operations behave, with no call of their own.
BEHAVIOURAL = {
    Capability.BLOCKING_RESERVE,
    Capability.ATOMIC_BATCH,
    Capability.COMPLETED_COUNT,
    Capability.LEASE_HANDOFF,
    Capability.IDEMPOTENT_ENQUEUE,
    Capability.ORDERED_KEYS,  # a keyed message is stored everywhere; only the order is promised
    Capability.TENANT_FAIRNESS,  # a tenant is a header, stored everywhere; only the turns are promised
}


def test_every_capability_is_covered_by_the_unsupported_operation_check() -> None:
    assert set(OPERATIONS) | BEHAVIOURAL == set(Capability)


@pytest.mark.parametrize("capability", list(OPERATIONS), ids=lambda c: c.value)
def test_an_undeclared_capability_raises_unsupported_operation(
    jobs_driver: Driver, jobs_queue: str, capability: Capability
) -> None:
    if jobs_driver.supports(capability):
        return  # declared: its own tests cover it
    for operation in OPERATIONS[capability]:
        with pytest.raises(UnsupportedOperation) as caught:
            operation(jobs_driver, jobs_queue)
        assert caught.value.capability == capability.value
        assert capability.value in str(caught.value)
    enqueue_one(jobs_driver, message(jobs_queue, "still works"))
    assert reserve_one(jobs_driver, jobs_queue).message.payload == "still works"


def test_capabilities_are_a_frozenset_of_capability(jobs_driver: Driver) -> None:
    assert isinstance(jobs_driver.capabilities, frozenset)
    assert all(isinstance(c, Capability) for c in jobs_driver.capabilities)
    for capability in Capability:
        assert jobs_driver.supports(capability) is (capability in jobs_driver.capabilities)


def test_the_driver_names_itself_and_answers_to_the_url_scheme(
    jobs_driver: Driver, jobs_driver_url: str
) -> None:
    assert isinstance(jobs_driver.name, str) and jobs_driver.name
    scheme = url_scheme(jobs_driver_url)
    assert scheme in jobs_driver.schemes or base_scheme(scheme) in jobs_driver.schemes
    assert isinstance(jobs_driver.version, str) and jobs_driver.version
    assert jobs_driver.name in repr(jobs_driver)


def test_ping_succeeds_on_an_open_driver(jobs_driver: Driver) -> None:
    jobs_driver.ping()


def test_close_twice_is_harmless(jobs_driver: Driver) -> None:
    jobs_driver.close()
    jobs_driver.close()


def test_the_driver_is_a_context_manager_that_closes(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    with jobs_driver_factory() as driver:
        enqueue_one(driver, message(jobs_queue))
    with pytest.raises(DriverClosed):
        driver.enqueue([message(jobs_queue)])


@pytest.mark.parametrize("operation", ["enqueue", "reserve", "ping"])
def test_use_after_close_raises_driver_closed(jobs_driver: Driver, jobs_queue: str, operation: str) -> None:
    jobs_driver.close()
    with pytest.raises(DriverClosed):
        if operation == "enqueue":
            jobs_driver.enqueue([message(jobs_queue)])
        elif operation == "reserve":
            jobs_driver.reserve([jobs_queue], limit=1, lease=30, timeout=0)
        else:
            jobs_driver.ping()


def test_messages_outlive_the_driver_that_enqueued_them(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    first = jobs_driver_factory()
    ident = enqueue_one(first, message(jobs_queue, "durable"))
    first.close()
    later = jobs_driver_factory()
    assert reserve_one(later, jobs_queue).id == ident
