"""Bad input: invalid names, oversized and non-JSON payloads, malformed records on the backend."""

from __future__ import annotations

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.errors import InvalidName, PayloadNotJSON, PayloadTooLarge, SerializationError
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    enqueue_one,
    message,
    messages,
    payloads,
    reserve_until,
)

BAD_NAMES = ["", "has space", "-leading-dash", "x" * 101, "slash/name", "ünïcode", "semi;colon", "new\nline"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_enqueue_to_an_invalid_queue_name_raises_invalid_name(
    jobs_driver: Driver, jobs_queue: str, name: str
) -> None:
    with pytest.raises(InvalidName, match="invalid queue name"):
        jobs_driver.enqueue([message(jobs_queue, "good"), message(name, "bad")])
    assert_nothing(jobs_driver, [jobs_queue], wait=0.2)


def test_reserve_from_an_invalid_queue_name_raises_invalid_name(jobs_driver: Driver, jobs_queue: str) -> None:
    with pytest.raises(InvalidName):
        jobs_driver.reserve([jobs_queue, "bad name"], limit=1, lease=30, timeout=0)


@pytest.mark.jobs_requires(Capability.STATS)
def test_stats_of_an_invalid_queue_name_raise_invalid_name(jobs_driver: Driver) -> None:
    with pytest.raises(InvalidName):
        jobs_driver.stats("bad name")


@pytest.mark.jobs_requires(Capability.PURGE)
def test_purge_of_an_invalid_queue_name_raises_invalid_name(jobs_driver: Driver) -> None:
    with pytest.raises(InvalidName):
        jobs_driver.purge("bad name")


def test_an_oversized_payload_raises_and_stores_nothing(jobs_driver: Driver, jobs_queue: str) -> None:
    huge = "x" * (jobs_driver.max_message_bytes + 1)
    with pytest.raises(PayloadTooLarge) as caught:
        jobs_driver.enqueue([message(jobs_queue, "small"), message(jobs_queue, huge)])
    assert str(jobs_driver.max_message_bytes) in str(caught.value)
    assert_nothing(jobs_driver, [jobs_queue])


def test_a_payload_just_under_the_limit_is_accepted(jobs_driver: Driver, jobs_queue: str) -> None:
    overhead = len(message(jobs_queue, "").encode())
    size = min(jobs_driver.max_message_bytes - overhead - 64, 256 * 1024)
    enqueue_one(jobs_driver, message(jobs_queue, "y" * size))
    (got,) = payloads(reserve_until(jobs_driver, [jobs_queue], 1))
    assert got == "y" * size


def test_a_payload_that_is_not_json_raises_naming_the_value(jobs_driver: Driver, jobs_queue: str) -> None:
    with pytest.raises(PayloadNotJSON, match=r"\[1\].*set"):
        jobs_driver.enqueue([message(jobs_queue, "fine"), message(jobs_queue, {"a": [1, {2}]})])
    with pytest.raises(SerializationError):
        jobs_driver.enqueue([message(jobs_queue, float("nan"))])
    assert_nothing(jobs_driver, [jobs_queue])


@pytest.mark.jobs_requires(Capability.ATOMIC_BATCH)
@pytest.mark.parametrize(
    ("size", "bad_at"), [(50, 25), (1500, 1400)], ids=["small", "large-bad-near-the-end"]
)
def test_an_atomic_batch_with_one_bad_message_stores_nothing(
    jobs_driver: Driver, jobs_queue: str, size: int, bad_at: int
) -> None:
    """A driver may stream a large batch to its backend: one refused message still stores nothing."""
    batch = messages(jobs_queue, size)
    batch[bad_at] = message("bad name", "bad")
    with pytest.raises(InvalidName):
        jobs_driver.enqueue(batch)
    batch[bad_at] = message(jobs_queue, {"not json": object()})
    with pytest.raises(SerializationError):
        jobs_driver.enqueue(batch)
    assert_nothing(jobs_driver, [jobs_queue])


MALFORMED = {
    "not-json": b"this is not json {",
    "not-utf8": b"\xff\xfe\x00garbage",
    "not-an-object": b"[1, 2, 3]",
    "missing-fields": b'{"payload": 1}',
    "wrong-types": b'{"id": 1, "name": ["x"], "queue": null}',
}


@pytest.mark.jobs_requires(Capability.RAW_INJECTION)
@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_record_does_not_block_the_messages_behind_it(
    jobs_driver: Driver, jobs_queue: str, body: bytes
) -> None:
    jobs_driver.inject_raw(jobs_queue, body)
    enqueue_one(jobs_driver, message(jobs_queue, "behind"))
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 1)) == ["behind"]
    assert_nothing(jobs_driver, [jobs_queue])  # a malformed record is never handed to a worker


@pytest.mark.jobs_requires(Capability.RAW_INJECTION, Capability.FAILED_STORE)
def test_a_malformed_record_ends_in_the_failed_store_with_the_reason(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    jobs_driver.inject_raw(jobs_queue, MALFORMED["not-json"])
    enqueue_one(jobs_driver, message(jobs_queue, "behind"))
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 1)) == ["behind"]
    (entry,) = jobs_driver.failed(queue=jobs_queue)
    assert "malformed" in entry.error.lower()
    assert entry.queue == jobs_queue
