"""Values round-trip exactly: no digit of a time or a payload is lost in Lua."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jobs_core.message import Message, ScheduleRecord
from jobs_redis import RedisDriver


def test_times_and_payload_numbers_keep_every_digit(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    due = time.time() - 0.123456789012345
    payload = {"big": 2**63 + 1, "float": 0.1 + 0.2, "tiny": 5e-324, "neg": -(2**53) - 1}
    message = Message(name="t.x", queue="q", payload=payload, available_at=due, priority=2**31 - 1)
    driver.enqueue([message])
    (delivery,) = driver.reserve(["q"])
    assert delivery.message.available_at == due
    assert delivery.message.payload == payload
    assert delivery.message.priority == 2**31 - 1


def test_schedule_times_compare_exactly(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    tick = 1_700_000_000.123456789
    driver.save_schedule(ScheduleRecord(name="s", data={}, next_run_at=tick))
    assert driver.claim_tick("s", tick)
    assert not driver.claim_tick("s", tick)
    assert driver.claim_tick("s", tick + 2.4e-7)  # the next double up is still later
    assert driver.advance_schedule("s", tick, tick + 60)
    (record,) = driver.schedules()
    assert record.next_run_at == tick + 60
    assert record.last_tick == tick + 2.4e-7


def test_a_blocked_reserve_wakes_on_enqueue_from_another_driver(
    make_driver: Callable[..., RedisDriver],
) -> None:
    waiter, producer = make_driver(), make_driver()
    got: list[float] = []

    def wait() -> None:
        found = waiter.reserve(["q"], timeout=30)
        got.append(time.monotonic())
        assert found

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    sent = time.monotonic()
    producer.enqueue([Message(name="t.x", queue="q")])
    thread.join(timeout=30)
    assert got and got[0] - sent < 5  # woken by the push, far before the 30 s timeout


def test_jobs_waiting_for_their_key_are_counted_and_purged(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    driver.enqueue([Message(name="t.x", queue="q", payload=n, key="k", unique_key=f"u{n}") for n in range(3)])
    running = driver.reserve(["q"], limit=10)
    assert [d.message.payload for d in running] == [0]
    counts = driver.stats("q")
    assert (counts.pending, counts.reserved) == (2, 1)
    assert driver.purge("q") == 2
    driver.ack(running[0])
    assert driver.reserve(["q"], limit=10) == []
    # the purged jobs freed their unique keys and their places in the key's order
    driver.enqueue([Message(name="t.x", queue="q", payload=9, key="k", unique_key="u1")])
    assert [d.message.payload for d in driver.reserve(["q"])] == [9]


def test_jobs_join_a_multi_pipeline_and_exist_only_if_it_executes(
    make_driver: Callable[..., RedisDriver], client: Any
) -> None:
    import pytest
    from jobs_core.errors import ConfigurationError

    driver = make_driver()
    with client.pipeline(transaction=True) as pipe:
        pipe.set(f"order-{driver.settings.prefix}", "placed")
        (ident,) = driver.enqueue_in(pipe, [Message(name="t.ship", queue="q", payload=1)])
        pipe.execute()
    with client.pipeline(transaction=True) as pipe:
        driver.enqueue_in(pipe, [Message(name="t.ship", queue="q", payload=2)])
        pipe.reset()  # discarded: neither the write nor the job
    (delivery,) = driver.reserve(["q"], limit=5)
    assert (delivery.id, delivery.message.payload) == (ident, 1)
    client.delete(f"order-{driver.settings.prefix}")
    with pytest.raises(ConfigurationError, match="transaction=True"):
        driver.enqueue_in(client.pipeline(transaction=False), [Message(name="t.x", queue="q")])
    with pytest.raises(ConfigurationError, match="unique_key"), client.pipeline() as pipe:
        driver.enqueue_in(pipe, [Message(name="t.x", queue="q", unique_key="u")])
