"""Offset resets and a broker that loses its data: the consumer notices, says so, and goes on.

Delayed jobs included: the delay forwarders notice too, and a job is never lost
because an acknowledged write was dropped, a tier was read past its end, or
the purge marks could not be read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from jobs_core.errors import BackendUnavailable, OperationTimedOut
from jobs_core.message import Message
from jobs_kafka import KafkaDriver
from jobs_kafka.testing.broker import FAST_TEST_SETTINGS, TansuBroker, free_port

from .conftest import ON_TANSU
from .helpers import jobs


def _delayed(queue: str, payloads: list[str], seconds: float) -> list[Message]:
    """Jobs with these payloads, due in ``seconds``."""
    due = time.time() + seconds
    return [Message(name="t", payload=p, queue=queue, available_at=due) for p in payloads]


def _drain(driver: KafkaDriver, queue: str, count: int, timeout: float = 30.0) -> list[object]:
    """Reserve and ack until ``count`` jobs ran; their payloads."""
    done: list[object] = []
    deadline = time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        batch = driver.reserve([queue], limit=count, lease=60, timeout=0.5)
        done += [d.message.payload for d in batch]
        driver.ack_many(batch)
    return done


def test_a_group_offset_beyond_the_end_of_the_log_is_reset_and_logged(
    make_driver: Callable[..., KafkaDriver], caplog: pytest.LogCaptureFixture
) -> None:
    # What a re-created topic, or a broker that lost the log but not the group, leaves behind.
    dispatcher = make_driver()
    dispatcher.enqueue(jobs("reset", 3))
    topic = dispatcher.names.queue("reset")
    group = dispatcher.consumer.group_of(topic)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1000)])
    for future in dispatcher.admin.client.alter_consumer_group_offsets([request]).values():
        future.result(timeout=10)
    caplog.set_level(logging.WARNING, logger="jobs_kafka")
    worker = make_driver()
    assert sorted(_drain(worker, "reset", 3)) == [0, 1, 2]  # type: ignore[type-var]
    warnings = [r.getMessage() for r in caplog.records if "offset reset" in r.getMessage()]
    assert warnings and f"{topic}[0]" in warnings[0] and "expected offset 1000" in warnings[0]
    worker.enqueue(jobs("reset", 1))
    assert _drain(worker, "reset", 1) == [0]


@pytest.mark.skipif(not ON_TANSU, reason="needs a broker the test can restart: runs against Tansu only")
def test_a_restart_of_a_broker_that_keeps_nothing_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    broker = TansuBroker.start(port=port)
    query = {"topic_prefix": "restart-", "group_id": "app", "timeout": 3, **FAST_TEST_SETTINGS}
    url = f"kafka://{broker.bootstrap}?{urlencode(query)}"
    worker, dispatcher = KafkaDriver(url), KafkaDriver(url)
    caplog.set_level(logging.WARNING, logger="jobs_kafka")
    try:
        dispatcher.enqueue(jobs("work", 30))
        dispatcher.enqueue(_delayed("work", ["early-0", "early-1"], 0.3))  # forwarded before the restart
        assert len(_drain(worker, "work", 32)) == 32
        broker.stop()
        broker = TansuBroker.start(port=port)  # a new process: no topics, no groups, no offsets
        # The long-lived dispatcher: at most its first write fails, clearly, and the next ones work.
        sent: list[object] = []
        for attempt in range(3):
            batch = [f"after-{attempt}-{n}" for n in range(5)]
            try:
                dispatcher.enqueue(_delayed("work", [f"delayed-{attempt}"], 0.3))
                dispatcher.enqueue(
                    [m.replace(payload=p) for m, p in zip(jobs("work", 5), batch, strict=True)]
                )
            except (OperationTimedOut, BackendUnavailable) as exc:
                assert attempt == 0 and broker.bootstrap in str(exc)
                continue
            sent += [*batch, f"delayed-{attempt}"]
        assert len(sent) >= 12
        # The running worker runs them, delayed ones included (it notices the group forgot it,
        # joins again, and forwards with a producer the new broker knows) ...
        assert sorted(_drain(worker, "work", len(sent))) == sorted(sent)  # type: ignore[type-var]
        assert any("forgot this member" in r.getMessage() for r in caplog.records)
        # ... and a new worker runs what is dispatched later, including a delayed job dispatched
        # while the old worker is closing (it may be held in the old worker's forwarder).
        fresh = KafkaDriver(url)
        try:
            dispatcher.enqueue(_delayed("work", ["late"], 0.5))
            worker.close()
            fresh.enqueue(jobs("work", 3))
            assert sorted(map(str, _drain(fresh, "work", 4))) == ["0", "1", "2", "late"]
            assert fresh.admin.partitions(fresh.names.queue("work")) == [0]  # re-created as configured
        finally:
            fresh.close()
    finally:
        worker.close()
        dispatcher.close()
        broker.stop()


def test_a_delay_group_offset_beyond_the_end_of_its_tier_is_reset_and_logged(
    make_driver: Callable[..., KafkaDriver], caplog: pytest.LogCaptureFixture
) -> None:
    # What a re-created tier topic, or a broker that lost the log but not the group, leaves
    # behind. A broker that answers a fetch beyond the end with nothing (Tansu) left the
    # tier waiting for ever; one that resets the client's offset had its records skipped.
    dispatcher = make_driver()
    tier = dispatcher.names.tier_topic("late", 1.0)
    dispatcher.admin.ensure([tier])
    request = ConsumerGroupTopicPartitions(
        dispatcher.names.delays_group("late"), [TopicPartition(tier, 0, 1000)]
    )
    for future in dispatcher.admin.client.alter_consumer_group_offsets([request]).values():
        future.result(timeout=10)
    caplog.set_level(logging.WARNING, logger="jobs_kafka")
    dispatcher.enqueue(_delayed("late", ["a", "b", "c"], 0.2))
    worker = make_driver()
    assert sorted(_drain(worker, "late", 3)) == ["a", "b", "c"]  # type: ignore[type-var]
    warnings = [r.getMessage() for r in caplog.records if "offset reset on delay tier" in r.getMessage()]
    assert warnings and f"{tier}[0]" in warnings[0] and "expected offset 1000" in warnings[0]
    dispatcher.enqueue(_delayed("late", ["d"], 0.2))
    assert _drain(worker, "late", 1) == ["d"]


class _Worker:
    """A driver reserving and acknowledging in a thread, counting the payloads it ran."""

    def __init__(self, url: str, ran: Counter[object], lock: threading.Lock) -> None:
        self.driver = KafkaDriver(url)
        self.ran, self.lock = ran, lock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = self.driver.reserve(["work"], limit=50, lease=60, timeout=0.2)
            except (OperationTimedOut, BackendUnavailable):  # a broker restarting
                time.sleep(0.2)
                continue
            with self.lock:
                self.ran.update(d.message.payload for d in batch)
            self.driver.ack_many(batch)

    def holds(self) -> int:
        """Tier partitions its delay forwarder holds."""
        forwarder = self.driver._forwarders.get("work")
        return 0 if forwarder is None else len(forwarder._windows)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.driver.close()


def test_delayed_jobs_of_several_workers_all_run_when_a_member_leaves(kafka_url: Callable[..., str]) -> None:
    url = kafka_url(timeout=5)
    ran: Counter[object] = Counter()
    lock = threading.Lock()
    dispatcher = KafkaDriver(url)
    workers = [_Worker(url, ran, lock) for _ in range(3)]
    sent: list[str] = []

    def dispatch(label: str, count: int) -> None:
        """Short delays, a few jobs at a time."""
        for start in range(0, count, 5):
            batch = [f"{label}-{n}" for n in range(start, start + 5)]
            dispatcher.enqueue(_delayed("work", batch, random.uniform(0.05, 1.0)))
            sent.extend(batch)
            time.sleep(0.02)

    def missing_after(timeout: float) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            with lock:
                missing = set(sent) - set(ran)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)

    def settled(timeout: float = 30.0) -> None:
        """Every tier partition held, by every live worker: no rebalance under way.

        (On Tansu a group whose leader leaves in the middle of a rebalance never
        forms again, whatever the clients do; a member leaving a settled group
        is what is tested here.)
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holds = [w.holds() for w in workers]
            if sum(holds) == len(dispatcher.settings.delay_tiers) and all(holds):
                return
            time.sleep(0.1)

    try:
        settled()
        dispatch("before", 100)
        assert missing_after(30) == set()
        # A member leaves while many delayed jobs are held in its forwarder and in flight.
        in_flight = threading.Thread(target=dispatch, args=("leaving", 200))
        in_flight.start()
        time.sleep(0.5)
        workers.pop(0).close()
        in_flight.join()
        assert missing_after(45) == set()
    finally:
        for worker in workers:
            worker.close()
        dispatcher.close()
