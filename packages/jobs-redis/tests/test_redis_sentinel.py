"""A Sentinel failover during a drain (one master, one replica, one Sentinel, started by the test).

With ``wait_replicas=1`` an enqueue returns only once the replica has it, so
killing the master (SIGKILL) loses no acknowledged enqueue: the replica that
Sentinel promotes holds every one. Without it, replication is asynchronous
and the enqueues the replica had not yet received when the master died are
lost; the second test measures how many.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from jobs_core.errors import JobsError
from jobs_core.message import Message
from jobs_redis import RedisDriver
from jobs_redis.testing.servers import SERVICE, Servers, client, start_sentinel

FAST = "socket_timeout=2&connect_timeout=0.5"


@pytest.fixture
def sentinel() -> Iterator[Servers]:
    try:
        servers = start_sentinel()
    except JobsError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Sentinel set-up: {exc}")
    with servers:
        yield servers


def _drain_through_failover(servers: Servers, options: str) -> tuple[set[str], set[str], int]:
    """Enqueue and drain while the master is killed; return (acknowledged, delivered, failed enqueues)."""
    url = f"{servers.url}&prefix=f{uuid.uuid4().hex[:8]}&{FAST}{options}"
    producer, consumer = RedisDriver(url), RedisDriver(url)
    acknowledged: set[str] = set()
    delivered: set[str] = set()
    refused = 0
    stop_producing = threading.Event()
    stop_consuming = threading.Event()

    def produce() -> None:
        nonlocal refused
        while not stop_producing.is_set():
            batch = [Message(name="t.x", queue="q", payload=n) for n in range(20)]
            try:
                producer.enqueue(batch)
            except JobsError:
                refused += 1
                time.sleep(0.02)
            else:
                acknowledged.update(m.id for m in batch)

    def consume() -> None:
        while not stop_consuming.is_set():
            try:
                got = consumer.reserve(["q"], limit=50, lease=5, timeout=0.2)
                delivered.update(d.id for d in got)
                consumer.ack_many(got)
            except JobsError:
                time.sleep(0.05)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 2000:
            assert time.monotonic() < deadline, "no progress before the failover"
            time.sleep(0.01)
        servers.kill(servers.master)
        sentinel = client(servers.sentinel)
        while True:
            assert time.monotonic() < deadline + 60, "Sentinel did not fail over"
            _host, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            if int(port) == servers.replica:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # enqueues go on against the new master (or are refused: it has no replica)
        stop_producing.set()
        threads[0].join(timeout=60)
        deadline = time.monotonic() + 60
        while not acknowledged <= delivered and time.monotonic() < deadline:
            time.sleep(0.1)
            if consumer.stats("q").pending == 0 and consumer.stats("q").reserved == 0:
                break
    finally:
        stop_producing.set()
        stop_consuming.set()
        for thread in threads:
            thread.join(timeout=60)
        producer.close()
        consumer.close()
    return acknowledged, delivered, refused


def test_with_wait_replicas_a_failover_loses_no_acknowledged_enqueue(sentinel: Servers) -> None:
    acknowledged, delivered, refused = _drain_through_failover(sentinel, "&wait_replicas=1&wait_timeout=1")
    lost = acknowledged - delivered
    print(
        f"{len(acknowledged)} acknowledged, {len(delivered)} delivered, {refused} refused, lost {len(lost)}"
    )
    assert not lost, f"{len(lost)} acknowledged enqueues lost in the failover"


def test_without_wait_replicas_a_failover_may_lose_the_last_enqueues(sentinel: Servers) -> None:
    acknowledged, delivered, refused = _drain_through_failover(sentinel, "")
    lost = acknowledged - delivered
    # Not asserted zero: asynchronous replication loses what the replica had not received yet.
    print(
        f"{len(acknowledged)} acknowledged, {len(delivered)} delivered, {refused} refused, lost {len(lost)}"
    )
    assert len(delivered) > 2000
