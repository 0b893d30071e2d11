"""Kafka-specific behaviour of the driver, against a real Kafka-protocol broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from jobs_core.errors import BackendUnavailable, OperationTimedOut, PayloadTooLarge
from jobs_core.message import Delivery, Message, ScheduleRecord
from jobs_kafka import KafkaDriver
from jobs_kafka.testing.broker import TansuBroker

from .conftest import ON_TANSU
from .helpers import jobs, reserve_until


def test_out_of_order_acks_commit_only_the_finished_prefix(make_driver: Callable[..., KafkaDriver]) -> None:
    first = make_driver()
    first.enqueue(jobs("work", 3))
    got = reserve_until(first, ["work"], 3)
    assert [d.message.payload for d in got] == [0, 1, 2]
    first.ack(got[0])
    first.ack(got[2])  # 1 is still running when the worker goes away
    first.close()
    second = make_driver()
    again = reserve_until(second, ["work"], 2)
    # 0 is never replayed; 1 is, and 2 too because its offset lies above the unfinished 1.
    assert [d.message.payload for d in again] == [1, 2]


def test_a_long_job_keeps_its_partition_and_the_group_keeps_polling(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    # Real brokers refuse sessions shorter than 6 s; max.poll.interval.ms may not be below the session.
    interval = 3000 if ON_TANSU else 7000
    settings = (
        {"max.poll.interval.ms": interval}
        if ON_TANSU
        else {"max.poll.interval.ms": interval, "session.timeout.ms": 6000}
    )
    driver = make_driver(**settings)
    driver.enqueue(jobs("slow", 1))
    (delivery,) = reserve_until(driver, ["slow"], 1)
    time.sleep(
        interval / 1000 * 1.5
    )  # longer than max.poll.interval.ms: the poll thread keeps the member alive
    assert driver.extend(delivery, 30) is True
    driver.ack(delivery)
    driver.enqueue(jobs("slow", 1))
    assert len(reserve_until(driver, ["slow"], 1)) == 1


def test_a_window_kept_busy_is_never_paused_and_one_left_full_is(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    # A pause makes librdkafka drop its prefetched records (and back off a fetch answered
    # meanwhile), so the poll loop only stops taking records while the worker catches up.
    from jobs_kafka.consuming import PAUSE_AFTER

    driver = make_driver(max_in_flight=20)
    driver.enqueue(jobs("busy", 200))
    consumer = driver.consumer.get(driver.names.queue("busy"))
    seen: list[int] = []

    def run_until(count: int) -> bool:
        """Reserve and ack at once until ``count`` jobs ran; whether the partition was ever paused."""
        paused = False
        deadline = time.monotonic() + 30
        while len(seen) < count and time.monotonic() < deadline:
            batch = driver.reserve(["busy"], limit=15, lease=60, timeout=0.5)
            seen.extend(d.message.payload for d in batch)
            driver.ack_many(batch)
            paused = paused or any(state.paused for state in consumer.parts.values())
        return paused

    assert not run_until(150)
    held = reserve_until(driver, ["busy"], 20)  # the window is full until these finish
    time.sleep(PAUSE_AFTER + 0.5)
    assert all(state.paused for state in consumer.parts.values())
    driver.ack_many(held)
    seen.extend(d.message.payload for d in held)
    run_until(200)
    assert seen == list(range(200))


def test_a_window_full_of_records_no_job_took_waits_longer_before_a_pause(
    make_driver: Callable[..., KafkaDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between its group join and its first reserve a worker takes nothing: pausing then
    # would throw away what librdkafka prefetched and stall the worker's start.
    from jobs_kafka import consuming

    monkeypatch.setattr(consuming, "IDLE_PAUSE_AFTER", 2.0)
    driver = make_driver(max_in_flight=20)
    driver.enqueue(jobs("idle", 100))
    assert driver.join(["idle"], timeout=30)
    consumer = driver.consumer.get(driver.names.queue("idle"))
    deadline = time.monotonic() + 10
    while sum(state.in_flight for state in consumer.parts.values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)  # the window fills with records nobody has taken
    time.sleep(consuming.PAUSE_AFTER + 0.5)
    assert not any(state.paused for state in consumer.parts.values())
    time.sleep(2.0)
    assert all(state.paused for state in consumer.parts.values())
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 100 and time.monotonic() < deadline:
        batch = driver.reserve(["idle"], limit=15, lease=60, timeout=0.5)
        seen.extend(d.message.payload for d in batch)
        driver.ack_many(batch)
    assert seen == list(range(100))


def test_a_full_window_pauses_the_partition_without_losing_records(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver(max_in_flight=10)
    driver.enqueue(jobs("window", 60))
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 60 and time.monotonic() < deadline:
        batch = driver.reserve(["window"], limit=7, lease=60, timeout=0.5)
        seen += [d.message.payload for d in batch]
        driver.ack_many(batch)
    assert seen == list(range(60))


def test_poison_record_goes_to_the_failed_store_and_the_partition_moves_on(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver()
    driver.enqueue(jobs("mixed", 1))
    driver.inject_raw("mixed", b"\xff not json")
    driver.enqueue([Message(name="t", payload="after", queue="mixed")])
    got = reserve_until(driver, ["mixed"], 2)
    assert [d.message.payload for d in got] == [0, "after"]
    (failed,) = driver.failed(queue="mixed")
    assert "malformed message" in failed.error
    assert failed.raw is not None and "not json" in failed.raw
    # Another process sees the same failed store.
    assert [f.id for f in make_driver().failed(queue="mixed")] == [failed.id]


def test_fail_writes_origin_headers_and_retry_failed_replays_once(
    make_driver: Callable[..., KafkaDriver], kafka_bootstrap: str
) -> None:
    driver = make_driver()
    (ident,) = driver.enqueue([Message(name="t", payload={"x": 1}, queue="dlq")])
    (delivery,) = reserve_until(driver, ["dlq"], 1)
    driver.fail(delivery, "Traceback (most recent call last):\n  ...\nValueError: boom")
    reader = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "inspect", "enable.auto.commit": False}
    )
    reader.assign([TopicPartition(driver.names.dead, 0, OFFSET_BEGINNING)])
    record = None
    deadline = time.monotonic() + 10
    while record is None and time.monotonic() < deadline:
        record = reader.poll(0.2)
        if record is not None and record.error() is not None:
            record = None
    reader.close()
    assert record is not None
    headers = dict(record.headers() or [])
    assert headers["jobs.origin.topic"] == driver.names.queue("dlq").encode()
    assert headers["jobs.origin.partition"] == b"0"
    assert headers["jobs.origin.offset"] == b"0"
    assert headers["jobs.attempts"] == b"1"
    assert headers["jobs.exception"] == b"ValueError: boom"
    assert b"Traceback" in headers["jobs.traceback"]
    assert json.loads(record.value())["id"] == ident

    other = make_driver()
    assert [f.id for f in other.failed()] == [ident]
    assert other.retry_failed(ident) is True
    assert other.retry_failed(ident) is False
    assert driver.failed() == []
    (again,) = reserve_until(driver, ["dlq"], 1)
    assert again.id == ident and again.message.attempts == 0


def test_retry_goes_through_a_delay_tier_and_never_runs_early(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver()
    driver.enqueue(jobs("retry", 1))
    (delivery,) = reserve_until(driver, ["retry"], 1)
    retried_at = time.time()
    driver.retry(delivery, 1.5, "try again")
    (again,) = reserve_until(driver, ["retry"], 1)
    assert time.time() - retried_at >= 1.5
    assert again.message.attempts == 1 and again.message.last_error == "try again"


def test_stats_from_a_process_that_never_consumed(make_driver: Callable[..., KafkaDriver]) -> None:
    worker = make_driver()
    worker.enqueue(jobs("counted", 5))
    worker.enqueue(jobs("counted", 2, available_at=time.time() + 120))
    got = reserve_until(worker, ["counted"], 2)
    worker.ack_many(got)
    observer = make_driver()
    deadline = time.monotonic() + 10
    while True:
        stats = observer.stats("counted")
        if (stats.pending, stats.delayed) == (3, 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (stats.pending, stats.delayed, stats.reserved) == (3, 2, 0)


def test_concurrent_claims_of_one_tick_have_exactly_one_winner(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    drivers = [make_driver() for _ in range(4)]
    drivers[0].save_schedule(ScheduleRecord(name="nightly", data={"job": "x"}, next_run_at=100.0))
    wins: list[tuple[int, float]] = []
    barrier = threading.Barrier(len(drivers))

    def claim(index: int) -> None:
        barrier.wait()
        for tick in (100.0, 200.0, 300.0):
            if drivers[index].claim_tick("nightly", tick):
                wins.append((index, tick))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(drivers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(tick for _, tick in wins) == [100.0, 200.0, 300.0]
    (stored,) = make_driver().schedules()
    assert stored.last_tick == 300.0 and stored.data == {"job": "x"}
    assert drivers[1].claim_tick("nightly", 300.0) is False
    assert drivers[1].claim_tick("missing", 1.0) is False


def test_a_member_joining_and_one_leaving_a_busy_group_lose_no_job(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    leaving, staying = make_driver(partitions=4), make_driver(partitions=4)
    leaving.enqueue(jobs("shared", 200))
    done: list[int] = []
    held = reserve_until(leaving, ["shared"], 20)
    done += [d.message.payload for d in held[:10]]
    leaving.ack_many(held[:10])  # the other 10 are unfinished when it leaves
    # The joining member gets a share of the partitions while the group is busy (the leaving
    # member first waits rebalance_grace for its unfinished jobs: slow on a loaded machine).
    deadline = time.monotonic() + 60
    joined_with = len(done)
    while len(done) == joined_with and time.monotonic() < deadline:
        batch = staying.reserve(["shared"], limit=50, timeout=0.2)
        done += [d.message.payload for d in batch]
        staying.ack_many(batch)
    assert len(done) > joined_with, "the joining member got no partition"
    leaving.close()
    deadline = time.monotonic() + 30
    while len(set(done)) < 200 and time.monotonic() < deadline:
        batch = staying.reserve(["shared"], limit=50, timeout=0.5)
        done += [d.message.payload for d in batch]
        staying.ack_many(batch)
    assert set(done) == set(range(200))
    assert len(done) - 200 <= 10, "only the leaving member's unfinished jobs may run twice"


def test_enqueue_with_the_broker_stopped_fails_within_the_timeout(kafka_url: Callable[..., str]) -> None:
    if not ON_TANSU:
        pytest.skip("needs a broker the test can stop: runs against Tansu only")
    with TansuBroker.start() as broker:
        url = kafka_url(timeout=2).replace(kafka_url().split("//")[1].split("?")[0], broker.bootstrap)
        driver = KafkaDriver(url)
        try:
            driver.enqueue(jobs("down", 1))
            broker.stop()
            started = time.monotonic()
            with pytest.raises((BackendUnavailable, OperationTimedOut)) as raised:
                driver.enqueue(jobs("down", 1))
            assert time.monotonic() - started < 2 + 2
            assert broker.bootstrap in str(raised.value)
            started = time.monotonic()
            with pytest.raises((BackendUnavailable, OperationTimedOut)):
                driver.enqueue(jobs("never-created", 1))
            assert time.monotonic() - started < 2 + 2
        finally:
            driver.close()


@pytest.mark.parametrize("delay", [None, 1.0], ids=["due", "delayed"])
def test_a_bulk_dispatch_arrives_whole_and_in_order(
    make_driver: Callable[..., KafkaDriver], delay: float | None
) -> None:
    """A large dispatch_many goes through the batch path: one topic, no message object per job."""
    from jobs_core import JobsApp, job

    @job(name="kafka.bulk")
    def bulk(payload: object) -> None:
        """Does nothing."""

    driver = make_driver()
    app = JobsApp(driver.url)
    try:
        app.register(bulk)
        # A message too large near the end refuses the whole batch before anything is written.
        too_big: list[object] = [{"n": n} for n in range(1200)]
        too_big[1150] = {"n": "x" * (driver.max_message_bytes + 1)}
        with pytest.raises(PayloadTooLarge):
            app.dispatch_many(bulk, too_big, queue="bulk", delay=delay)
        dispatched_at = time.time()
        ids = app.dispatch_many(bulk, [{"n": n} for n in range(1200)], queue="bulk", delay=delay)
    finally:
        app.close()
    assert len(ids) == len(set(ids)) == 1200
    got = reserve_until(driver, ["bulk"], 1200, timeout=40)
    received_at = time.time()
    assert [d.message.payload["n"] for d in got] == list(range(1200))
    assert [d.id for d in got] == ids
    if delay:
        assert min(d.message.available_at for d in got) >= dispatched_at + delay
        assert received_at >= dispatched_at + delay  # never handed out early


def test_after_a_bulk_dispatch_an_empty_reserve_means_this_process_read_all_it_wrote(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    """The bulk path has no delivery report per record: the driver knows what it
    wrote by count, which must still keep reserve(timeout=0) from coming back
    empty while its own records are unread.
    """
    from jobs_core import job
    from jobs_core.job import job_instance
    from jobs_core.message import MessageBatch

    @job(name="kafka.spread")
    def spread(payload: object) -> None:
        """Does nothing."""

    driver = make_driver(partitions=3)
    assert driver.join(["spread"], timeout=30)
    for _ in range(2):
        batch = job_instance(spread).to_messages([{"n": n} for n in range(1600)], queue="spread")
        assert isinstance(batch, MessageBatch)
        ids = driver.enqueue(batch)
        got: list[Delivery] = []
        while True:
            found = driver.reserve(["spread"], limit=400, lease=30, timeout=0)
            if not found:
                break
            got += found
        assert sorted(d.id for d in got) == sorted(i for i in ids if i is not None)
        driver.ack_many(got)
    assert driver.stats("spread").pending == 0


def test_a_partition_paused_when_it_was_taken_away_is_fetched_when_it_comes_back(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    # librdkafka keeps a partition's pause across a revoke and a later assignment.
    # No sticky partitioning: each record picks a partition at random, so both get
    # about half of the 100 (sticky batches may put nearly all of them in one).
    settings = {
        "partitions": 2,
        "max_in_flight": 5,
        "rebalance_grace": 0.5,
        "sticky.partitioning.linger.ms": 0,
    }
    first = make_driver(**settings)
    first.enqueue(jobs("paused", 100))
    held = reserve_until(first, ["paused"], 10)
    assert len(held) == 10  # both windows full: after PAUSE_AFTER both partitions are paused
    time.sleep(1.5)
    assert first.reserve(["paused"], limit=10, timeout=0.2) == []
    second = make_driver(**settings)
    deadline = time.monotonic() + 30
    taken: list[Delivery] = []
    while not taken and time.monotonic() < deadline:
        taken = second.reserve(["paused"], limit=5, timeout=0.2)
        first.reserve(["paused"], limit=0)  # keeps the first member polling its group
    assert taken, "the joining member got no partition"
    second.ack_many(taken)
    second.close()  # its partition goes back to the first member, still paused in librdkafka
    first.ack_many(held)
    done = {d.message.payload for d in [*held, *taken]}
    deadline = time.monotonic() + 30
    while len(done) < 100 and time.monotonic() < deadline:
        batch = first.reserve(["paused"], limit=50, timeout=0.2)
        done |= {d.message.payload for d in batch}
        first.ack_many(batch)
    assert done == set(range(100)), f"{100 - len(done)} jobs never fetched again"
