"""Offset resets and a broker that loses its data: the consumer notices, says so, and goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from jobs_core.errors import BackendUnavailable, OperationTimedOut
from jobs_kafka import KafkaDriver
from jobs_kafka.testing.broker import FAST_TEST_SETTINGS, TansuBroker, free_port

from .conftest import ON_TANSU
from .helpers import jobs


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
        assert len(_drain(worker, "work", 30)) == 30
        broker.stop()
        broker = TansuBroker.start(port=port)  # a new process: no topics, no groups, no offsets
        # The long-lived dispatcher: at most its first write fails, clearly, and the next ones work.
        sent: list[object] = []
        for attempt in range(3):
            batch = [f"after-{attempt}-{n}" for n in range(5)]
            try:
                dispatcher.enqueue(
                    [m.replace(payload=p) for m, p in zip(jobs("work", 5), batch, strict=True)]
                )
            except (OperationTimedOut, BackendUnavailable) as exc:
                assert attempt == 0 and broker.bootstrap in str(exc)
                continue
            sent += batch
        assert len(sent) >= 10
        # The running worker runs them (it notices the group forgot it, and joins again) ...
        assert sorted(_drain(worker, "work", len(sent))) == sorted(sent)  # type: ignore[type-var]
        assert any("forgot this member" in r.getMessage() for r in caplog.records)
        # ... and so does a new worker with what is dispatched later.
        fresh = KafkaDriver(url)
        try:
            worker.close()
            fresh.enqueue(jobs("work", 3))
            assert _drain(fresh, "work", 3) == [0, 1, 2]
            assert fresh.admin.partitions(fresh.names.queue("work")) == [0]  # re-created as configured
        finally:
            fresh.close()
    finally:
        worker.close()
        dispatcher.close()
        broker.stop()
