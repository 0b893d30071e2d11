"""A blocked reserve: woken by an enqueue, it takes the job in the round trip that waited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jobs_core.message import Delivery, Message
from jobs_redis import RedisDriver


def _reserve_in_thread(driver: RedisDriver, timeout: float) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def wait() -> None:
        out.append(driver.reserve(["q"], limit=10, lease=30.0, timeout=timeout))
        out.append(time.time())

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, out


def test_a_woken_reserve_takes_the_job_without_another_call_and_holds_a_true_lease(
    make_driver: Callable[..., RedisDriver], client: Any, monkeypatch: Any
) -> None:
    waiter, producer = make_driver(), make_driver()
    calls: list[str] = []
    run = waiter._run

    def counting(script: str, args: Any, action: str) -> Any:
        calls.append(script)
        return run(script, args, action)

    monkeypatch.setattr(waiter, "_run", counting)
    thread, out = _reserve_in_thread(waiter, timeout=30)
    time.sleep(0.5)
    assert calls == ["reserve"]  # one empty reserve, then blocked
    producer.enqueue([Message(name="t.x", queue="q", payload=1)])
    thread.join(timeout=30)
    deliveries: list[Delivery] = out[0]
    assert [d.message.payload for d in deliveries] == [1]
    assert calls == ["reserve"]  # the reserve that ran after the wake-up was sent with the wait
    stored = client.zscore(f"{{{waiter.settings.prefix}}}:q:q:l", deliveries[0].id)
    assert abs(stored - (out[1] + 30.0)) < 2.0  # the lease runs 30 s from about now, by this host's clock
    assert abs(stored - deliveries[0].lease_expires_at) < 2.0
    waiter.ack(deliveries[0])
    assert waiter.stats("q").completed == 1  # the receipt of the pipelined reserve holds the job


def test_a_woken_reserve_does_not_take_a_job_before_it_is_due(
    make_driver: Callable[..., RedisDriver],
) -> None:
    waiter, producer = make_driver(), make_driver()
    thread, out = _reserve_in_thread(waiter, timeout=10)
    time.sleep(0.3)
    due = time.time() + 0.4
    producer.enqueue([Message(name="t.x", queue="q", payload=2, available_at=due)])  # wakes the waiter
    thread.join(timeout=30)
    assert [d.message.payload for d in out[0]] == [2]
    assert out[1] >= due
