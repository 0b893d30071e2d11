"""Record sizes and poison records: nothing a record holds may wedge its partition."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from jobs_core.errors import PayloadTooLarge
from jobs_core.message import Message
from jobs_kafka import KafkaDriver
from jobs_kafka.delays import QUEUE_HEADER

from .helpers import jobs, reserve_until


def _dead_records(driver: KafkaDriver, bootstrap: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every record of the dead-letter topic: its value and headers."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "inspect", "enable.partition.eof": True})
    reader.assign([TopicPartition(driver.names.dead, 0, OFFSET_BEGINNING)])
    found: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            record = reader.poll(0.2)
            if record is None:
                continue
            if record.error() is not None:
                if found:
                    break
                continue
            headers = {str(k): v if isinstance(v, bytes) else b"" for k, v in record.headers() or []}
            found.append((bytes(record.value() or b""), headers))
    finally:
        reader.close()
    return found


def _at_limit(driver: KafkaDriver, message: Message) -> Message:
    """``message`` with a payload that makes it exactly as large as the driver accepts."""
    return message.replace(payload="x" * (driver.max_message_bytes - len(message.encode())))


def test_a_job_over_the_producer_limit_is_refused_at_dispatch(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    default = make_driver()
    assert default.max_message_bytes == 1_000_000 - 512  # librdkafka's message.max.bytes, less framing
    driver = make_driver(**{"message.max.bytes": 100_000})
    assert driver.max_message_bytes == 100_000 - 512
    fits = _at_limit(driver, Message(name="t", payload="", queue="big"))
    assert len(fits.encode()) == driver.max_message_bytes
    too_big = fits.replace(payload=fits.payload + "x")
    with pytest.raises(PayloadTooLarge) as refused:
        driver.enqueue([jobs("big", 1)[0], too_big])
    assert refused.value.size == driver.max_message_bytes + 1
    assert refused.value.limit == driver.max_message_bytes
    assert f"{driver.max_message_bytes + 1} bytes" in str(refused.value)
    assert f"{driver.max_message_bytes}-byte limit" in str(refused.value)
    # The batch was refused whole; a job exactly at the limit goes through, delayed or not.
    delayed = _at_limit(driver, Message(name="t", payload="", queue="big", available_at=time.time() + 1))
    driver.enqueue([fits, delayed])
    got = reserve_until(driver, ["big"], 2)
    assert [d.message.payload for d in got] == [fits.payload, delayed.payload]


def test_a_poison_record_at_the_limit_is_dead_lettered_cut_and_the_partition_goes_on(
    make_driver: Callable[..., KafkaDriver], kafka_bootstrap: str
) -> None:
    driver = make_driver()
    # Invalid UTF-8: as JSON text every byte becomes "\ufffd", six times its size.
    poison = b"\xff" * driver.max_message_bytes
    driver.enqueue(jobs("wedge", 1))
    driver.inject_raw("wedge", poison)
    driver.enqueue([Message(name="t", payload=n, queue="wedge") for n in (1, 2)])
    got = reserve_until(driver, ["wedge"], 3)
    assert [d.message.payload for d in got] == [0, 1, 2]
    (failed,) = make_driver().failed(queue="wedge")
    assert failed.error.startswith("malformed message")
    assert f"of {len(poison)} bytes kept" in failed.error
    ((value, headers),) = _dead_records(driver, kafka_bootstrap)
    assert len(value) + sum(len(k) + len(v) for k, v in headers.items()) < 1_000_000
    assert headers["jobs.origin.topic"] == driver.names.queue("wedge").encode()
    assert headers["jobs.origin.offset"] == b"1"
    assert headers["jobs.exception"].startswith(b"malformed message")
    assert headers["jobs.truncated"].startswith(f"size={len(poison)};sha256=".encode())
    # Replaying it writes the whole original body back (it fails again, identically).
    assert driver.retry_failed(failed.id)
    assert driver.reserve(["wedge"], limit=1, timeout=2) == []
    (again,) = driver.failed(queue="wedge")
    digest = hashlib.sha256(poison).hexdigest()
    assert again.id != failed.id and f"sha256 {digest}" in again.error and f"sha256 {digest}" in failed.error
    assert failed.raw is not None and failed.raw.startswith("\ufffd" * 1000)


def test_a_failing_job_at_the_limit_reaches_the_failed_store_and_replays_whole(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver()
    job = Message(name="big.job", payload="", queue="heavy")
    # Near the limit, with room for the fields a retry adds (attempts, due time, an error).
    job = job.replace(payload="é" * ((driver.max_message_bytes - 2000 - len(job.encode())) // 2))
    driver.enqueue([job, *jobs("heavy", 1)])
    first, behind = reserve_until(driver, ["heavy"], 2)
    # Retried with a long error: the error is cut to fit, the payload never.
    driver.retry(first, 0.0, "Traceback (most recent call last):\n" + "  line\n" * 100_000 + "KeyError: 'x'")
    driver.ack(behind)
    (again,) = reserve_until(driver, ["heavy"], 1)
    assert again.message.payload == job.payload and again.message.attempts == 1
    assert again.message.last_error is not None and again.message.last_error.endswith("KeyError: 'x'")
    # Failed with an error far over the limit: stored cut, with its name, queue and the reason.
    driver.fail(again, "Traceback (most recent call last):\n" + "x" * 3_000_000 + "\nValueError: boom")
    (failed,) = make_driver().failed(queue="heavy")
    assert (failed.id, failed.name, failed.queue, failed.attempts) == (job.id, "big.job", "heavy", 2)
    assert failed.error.startswith("Traceback") and "ValueError: boom" in failed.error
    assert driver.retry_failed(failed.id)
    (replayed,) = reserve_until(driver, ["heavy"], 1)
    assert replayed.id == job.id and replayed.message.payload == job.payload
    assert replayed.message.attempts == 0
    assert driver.failed(queue="heavy") == []


def test_any_exception_while_decoding_a_record_fails_that_record_alone(
    make_driver: Callable[..., KafkaDriver], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = Message.decode

    def fragile(body: bytes) -> Message:
        if b"recursion" in body:
            raise RecursionError("maximum recursion depth exceeded")
        if b"overflow" in body:
            raise OverflowError("int too large to convert to float")
        return decode(body)

    monkeypatch.setattr(Message, "decode", staticmethod(fragile))
    driver = make_driver()
    deep = b'{"v":1,"id":"1","name":"t","queue":"odd","payload":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body in (b'{"recursion":1}', deep, b'{"overflow":1e999}'):
        driver.inject_raw("odd", body)
    driver.enqueue(jobs("odd", 2))
    # The same in a delay tier: the forwarder fails the record and forwards the job behind it.
    driver.reserve(["odd"], timeout=0)  # starts the forwarder
    tier = driver.names.tier_topic("odd", driver.settings.delay_tiers[0])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(tier, b'{"overflow":1}', headers=[(QUEUE_HEADER, b"odd")])
    producer.flush(10)
    driver.enqueue([Message(name="t", payload="late", queue="odd", available_at=time.time() + 0.5)])
    got = reserve_until(driver, ["odd"], 3)
    assert [d.message.payload for d in got] == [0, 1, "late"]
    errors = sorted(f.error.split(":")[0] for f in driver.failed(queue="odd"))
    assert len(errors) == 4
    assert errors.count("malformed message in delay tier") == 1
    reasons = " ".join(f.error for f in driver.failed(queue="odd"))
    assert "maximum recursion depth" in reasons and "int too large" in reasons


def test_an_unreadable_failed_store_entry_is_listed_not_fatal(
    make_driver: Callable[..., KafkaDriver], kafka_bootstrap: str
) -> None:
    driver = make_driver()
    driver.enqueue(jobs("store", 1))
    (delivery,) = reserve_until(driver, ["store"], 1)
    driver.fail(delivery, "ValueError: boom")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(driver.names.dead, b"[" * 100_000, key=b"odd-entry")
    producer.produce(driver.names.dead, b'{"id": "x", "message": {"v": 1}}', key=b"bad-message")
    producer.flush(10)
    listed = {f.id: f for f in make_driver().failed()}
    assert set(listed) == {delivery.id, "odd-entry", "bad-message"}
    assert listed["odd-entry"].error.startswith("unreadable failed-job entry")
    assert driver.forget_failed("odd-entry") and driver.forget_failed("bad-message")
    assert [f.id for f in driver.failed()] == [delivery.id]
