"""The Driver base class: what it enforces for every driver before any backend is touched."""

from __future__ import annotations

import time

import pytest
from jobs_core import Capability, Driver, Message, job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import DriverClosed, InvalidName, PayloadNotJSON, PayloadTooLarge, UnsupportedOperation
from jobs_core.job import job_instance
from jobs_core.message import MessageBatch


@job(name="contract.bulk")
def _bulk_job(payload: object) -> None:
    """A job for bulk batches."""


class Plain(MemoryDriver):
    """A driver declaring none of the message features."""

    name = "plain-contract"
    capabilities = MemoryDriver.capabilities - {Capability.DELAY, Capability.PRIORITY, Capability.UNIQUE}


@pytest.mark.parametrize(
    ("fields", "capability"),
    [
        ({"available_at": time.time() + 3600}, "delay"),
        ({"priority": 1}, "priority"),
        ({"priority": -1}, "priority"),
        ({"unique_key": "k"}, "unique"),
    ],
)
def test_validate_refuses_undeclared_features_and_stores_nothing(
    fields: dict[str, object], capability: str
) -> None:
    driver = Plain()
    batch = [Message(name="n", queue="q"), Message(name="n", queue="q", **fields)]
    with pytest.raises(UnsupportedOperation) as caught:
        driver.enqueue(batch)
    assert caught.value.capability == capability
    assert "plain-contract" in str(caught.value)
    assert driver.reserve(["q"]) == []


def test_validate_accepts_plain_messages_on_a_plain_driver() -> None:
    driver = Plain()
    driver.enqueue([Message(name="n", queue="q", available_at=time.time() - 1)])
    assert len(driver.reserve(["q"])) == 1


def test_validate_checks_names_sizes_and_json_before_encoding_everything() -> None:
    driver: Driver = MemoryDriver(max_message_bytes=500)
    with pytest.raises(InvalidName):
        driver.validate([Message(name="n", queue="no spaces")])
    with pytest.raises(PayloadTooLarge, match="exceeds the 500-byte limit of driver 'memory'"):
        driver.validate([Message(name="n", queue="q", payload="x" * 500)])
    with pytest.raises(PayloadNotJSON, match="set"):
        driver.validate([Message(name="n", queue="q", payload={1, 2})])
    (body,) = driver.validate([Message(name="n", queue="q", payload=[1])])
    assert Message.decode(body).payload == [1]


def test_check_batch_refuses_a_bulk_batch_whole_without_encoding_it() -> None:
    driver: Driver = MemoryDriver(max_message_bytes=500)
    payloads: list[object] = [{"i": i} for i in range(1000)]
    batch = job_instance(_bulk_job).to_messages(payloads, queue="q")
    assert isinstance(batch, MessageBatch)
    driver.check_batch(batch)  # fine as it is
    payloads[900] = {"text": "x" * 500}
    too_big = job_instance(_bulk_job).to_messages(payloads, queue="q")
    assert isinstance(too_big, MessageBatch)
    with pytest.raises(PayloadTooLarge, match="exceeds the 500-byte limit of driver 'memory'"):
        driver.check_batch(too_big)
    with pytest.raises(PayloadTooLarge):
        driver.validate(too_big)
    delayed = job_instance(_bulk_job).to_messages(payloads[:600], queue="q", delay=60)
    assert isinstance(delayed, MessageBatch)
    with pytest.raises(UnsupportedOperation):
        Plain().check_batch(delayed)


def test_require_and_supports() -> None:
    driver = Plain()
    assert driver.supports(Capability.STATS)
    assert not driver.supports(Capability.PRIORITY)
    driver.require(Capability.STATS)
    with pytest.raises(UnsupportedOperation, match="does not support priority: ordering"):
        driver.require(Capability.PRIORITY, "ordering")


def test_a_closed_driver_refuses_work_and_closes_twice() -> None:
    with MemoryDriver() as driver:
        driver.ping()
    driver.close()
    with pytest.raises(DriverClosed, match="'memory' is closed"):
        driver.check_open()
