"""The consumer-group behaviour the driver relies on, shown with plain confluent-kafka clients.

No code of this project runs here: a failure is the broker's (or the client
library's). On the test broker (Tansu) the test below is a strict xfail that
names the defect; pointed at a real cluster (``JOBS_KAFKA_BOOTSTRAP``) it
must pass.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .conftest import ON_TANSU

PARTITIONS = 6


class Member:
    """One consumer of the group, polling on a thread of its own, tracking what it holds."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.held: set[int] = set()
        self.revoked = 0
        self.leave_after_revoke = False
        self.stopping = False
        self.closed = threading.Event()
        timing = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 200} if ON_TANSU else {}
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **timing,
            }
        )
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.held |= {tp.partition for tp in partitions}

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.held -= {tp.partition for tp in partitions}
        self.revoked += 1

    def _poll(self) -> None:
        try:
            while not self.stopping and not (self.leave_after_revoke and self.revoked):
                self.consumer.poll(0.05)
        finally:
            self.consumer.close()  # leaves the group
            self.closed.set()


@pytest.fixture
def group(kafka_bootstrap: str) -> Iterator[Callable[[], Member]]:
    """Members of a fresh group on a fresh topic of six partitions, each with records."""
    topic, name = f"b{uuid.uuid4().hex[:10]}", f"g{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=20)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(PARTITIONS * 10):
        producer.produce(topic, b"x", partition=n % PARTITIONS)
    producer.flush(20)
    members: list[Member] = []

    def join() -> Member:
        members.append(Member(kafka_bootstrap, topic, name))
        return members[-1]

    yield join
    for member in members:
        member.stopping = True
    for member in members:
        member.closed.wait(30)
    admin.delete_topics([topic])


def _until(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _covers(*members: Member) -> bool:
    """Every partition held by exactly one of ``members``."""
    return sorted(n for m in members for n in m.held) == list(range(PARTITIONS))


@pytest.mark.xfail(
    ON_TANSU,
    strict=True,
    reason="Tansu defect: a group whose leader leaves during a cooperative rebalance never assigns "
    "the partitions it gave up (the others wait for good)",
)
def test_the_partitions_of_a_leader_that_leaves_during_a_cooperative_rebalance_are_assigned_again(
    group: Callable[[], Member],
) -> None:
    leader = group()
    assert _until(lambda: _covers(leader), 30), "the first member never got the partitions"
    second = group()
    assert _until(lambda: bool(leader.held and second.held) and _covers(leader, second), 30)
    # A third member joins; the leader leaves as soon as the rebalance took its first partitions
    # (the first round of the cooperative protocol), before the second round has assigned them.
    leader.revoked, leader.leave_after_revoke = 0, True
    third = group()
    assert leader.closed.wait(30), "the leader was never asked to give up a partition"
    assert _until(lambda: _covers(second, third), 20), (
        f"partitions held after the leader left: {sorted(second.held)} and {sorted(third.held)}"
    )
