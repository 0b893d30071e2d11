"""Bad input: invalid names, oversized and non-JSON payloads, malformed records on the backend."""

from __future__ import annotations

import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.errors import InvalidName, PayloadNotJSON, PayloadTooLarge, SerializationError
from jobs_core.message import new_id
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    enqueue_one,
    message,
    messages,
    payloads,
    reserve_until,
    wait_for,
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


def _envelope(extra: bytes) -> bytes:
    """An envelope whose required fields are fine, with ``extra`` fields spliced in."""
    head = b'{"v":1,"id":"0123456789abcdef0123456789abcdef","name":"conformance.job","queue":"q",'
    return head + extra + b"}"


MALFORMED = {
    "empty": b"",
    "not-json": b"this is not json {",
    "not-utf8": b"\xff\xfe\x00garbage",
    "not-an-object": b"[1, 2, 3]",
    "missing-fields": b'{"payload": 1}',
    "wrong-types": b'{"id": 1, "name": ["x"], "queue": null}',
    # Unusual data: numbers no float or column holds, nesting no decoder reads back.
    "attempts-beyond-a-float": _envelope(b'"attempts":1e400'),
    "due-time-beyond-a-float": _envelope(b'"available_at":' + b"9" * 400),
    "retry-delay-beyond-a-float": _envelope(b'"retry":{"delay":1e999}'),
    "retry-delay-nan": _envelope(b'"retry":{"delay":NaN}'),
    "unknown-backoff": _envelope(b'"retry":{"backoff":"linear"}'),
    "negative-timeout": _envelope(b'"timeout":-5'),
    "priority-beyond-32-bits": _envelope(b'"priority":1099511627776'),
    "attempts-negative": _envelope(b'"attempts":-1'),
    "payload-nested-5000-deep": _envelope(b'"payload":' + b"[" * 5000 + b"]" * 5000),
    "payload-integer-of-5000-digits": _envelope(b'"payload":' + b"7" * 5000),
    "headers-not-strings": _envelope(b'"headers":{"a":1}'),
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
@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_record_ends_in_the_failed_store_with_the_reason(
    jobs_driver: Driver, jobs_queue: str, body: bytes
) -> None:
    jobs_driver.inject_raw(jobs_queue, body)
    enqueue_one(jobs_driver, message(jobs_queue, "behind"))
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 1)) == ["behind"]
    reached = wait_for(lambda: len(jobs_driver.failed(queue=jobs_queue)) == 1)
    assert reached, "nothing reached the failed store"
    (entry,) = jobs_driver.failed(queue=jobs_queue)
    assert "malformed" in entry.error.lower()
    assert entry.queue == jobs_queue


@pytest.mark.jobs_requires(Capability.RAW_INJECTION, Capability.FAILED_STORE)
def test_every_malformed_record_at_the_head_of_a_queue_is_failed_and_the_jobs_behind_run(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    """A run of unreadable records, each of a different kind, stops nothing."""
    for body in MALFORMED.values():
        jobs_driver.inject_raw(jobs_queue, body)
    enqueue_one(jobs_driver, message(jobs_queue, "first behind"))
    enqueue_one(jobs_driver, message(jobs_queue, "second behind"))
    got = payloads(reserve_until(jobs_driver, [jobs_queue], 2))
    assert sorted(got) == ["first behind", "second behind"]
    assert wait_for(lambda: len(jobs_driver.failed(queue=jobs_queue, limit=100)) == len(MALFORMED))


@pytest.mark.jobs_requires(Capability.RAW_INJECTION)
@pytest.mark.parametrize("operation", ["ack", "retry", "fail"])
def test_a_readable_raw_record_is_delivered_and_finished_like_any_job(
    jobs_driver: Driver, jobs_queue: str, operation: str
) -> None:
    """A record written by another producer: its delivery carries the id in its body and
    the queue it is on, and ack, retry and fail act on the stored record (found by the
    delivery's handle, whatever id the driver stored it under).
    """
    ident = new_id()
    body = b'{"v":1,"id":"%s","name":"conformance.job","queue":"elsewhere","payload":7}' % ident.encode()
    jobs_driver.inject_raw(jobs_queue, body)
    (delivery,) = reserve_until(jobs_driver, [jobs_queue], 1, lease=1.0)
    assert (delivery.id, delivery.queue, delivery.message.payload) == (ident, jobs_queue, 7)
    if operation == "ack":
        jobs_driver.ack(delivery)
    elif operation == "retry":
        jobs_driver.retry(delivery, 0.0, "again")
        (again,) = reserve_until(jobs_driver, [jobs_queue], 1, lease=1.0)
        assert (again.id, again.queue, again.message.attempts) == (ident, jobs_queue, 1)
        jobs_driver.ack(again)
    else:
        jobs_driver.fail(delivery, "gave up")
        if jobs_driver.supports(Capability.FAILED_STORE):
            (entry,) = jobs_driver.failed(queue=jobs_queue)
            assert (entry.id, entry.queue, entry.payload) == (ident, jobs_queue, 7)
    assert_nothing(jobs_driver, [jobs_queue], wait=1.5)  # finished: not redelivered when the lease ends


@pytest.mark.jobs_requires(Capability.RAW_INJECTION, Capability.FAILED_STORE)
def test_a_malformed_record_in_the_failed_store_keeps_its_bytes_and_counts_no_attempt(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    before = time.time()
    jobs_driver.inject_raw(jobs_queue, MALFORMED["not-json"])
    enqueue_one(jobs_driver, message(jobs_queue, "behind"))
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 1)) == ["behind"]
    assert wait_for(lambda: len(jobs_driver.failed(queue=jobs_queue)) == 1)
    (entry,) = jobs_driver.failed(queue=jobs_queue)
    assert (entry.name, entry.payload, entry.attempts, entry.message) == ("", None, 0, None)
    assert entry.raw is not None and "this is not json {" in entry.raw
    assert before - 1.0 <= entry.failed_at <= time.time() + 1.0


@pytest.mark.jobs_requires(Capability.RAW_INJECTION, Capability.FAILED_STORE, Capability.RETRY_FAILED)
@pytest.mark.parametrize("kind", ["not-json", "empty"])
def test_retry_failed_puts_a_malformed_record_back_as_it_was(
    jobs_driver: Driver, jobs_queue: str, kind: str
) -> None:
    """Its bytes go back unchanged (a fixed consumer may read them); still unreadable, it fails again."""
    jobs_driver.inject_raw(jobs_queue, MALFORMED[kind])
    enqueue_one(jobs_driver, message(jobs_queue, "behind"))
    assert payloads(reserve_until(jobs_driver, [jobs_queue], 1)) == ["behind"]
    assert wait_for(lambda: len(jobs_driver.failed(queue=jobs_queue)) == 1)
    (entry,) = jobs_driver.failed(queue=jobs_queue)
    assert jobs_driver.retry_failed(entry.id) is True
    assert_nothing(jobs_driver, [jobs_queue])  # read again, failed again: never handed out
    assert wait_for(lambda: len(jobs_driver.failed(queue=jobs_queue)) == 1)
    (again,) = jobs_driver.failed(queue=jobs_queue)
    assert again.raw == entry.raw
    assert "malformed" in again.error.lower()
    assert isinstance(again.id, str) and again.id
    assert jobs_driver.forget_failed(again.id) is True
    assert jobs_driver.failed(queue=jobs_queue) == []


@pytest.mark.jobs_requires(Capability.RAW_INJECTION)
def test_a_raw_record_takes_its_place_in_line_behind_earlier_messages(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    enqueue_one(jobs_driver, message(jobs_queue, "first"))
    body = b'{"v":1,"id":"%s","name":"conformance.job","queue":"q","payload":"raw"}' % new_id().encode()
    jobs_driver.inject_raw(jobs_queue, body)
    enqueue_one(jobs_driver, message(jobs_queue, "last"))
    got = reserve_until(jobs_driver, [jobs_queue], 3, limit=1)
    assert payloads(got) == ["first", "raw", "last"]
    if jobs_driver.supports(Capability.STATS):
        assert jobs_queue in jobs_driver.queues()


@pytest.mark.jobs_requires(Capability.RAW_INJECTION, Capability.STATS)
def test_queues_lists_a_queue_holding_only_a_raw_record(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.inject_raw(jobs_queue, MALFORMED["not-json"])
    assert jobs_queue in jobs_driver.queues()
