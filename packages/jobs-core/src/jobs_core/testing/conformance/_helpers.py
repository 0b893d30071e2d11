"""Helpers shared by the conformance tests (not a test module).

Backends deliver with some latency (a broker may take a second), so tests
poll until something happens or a generous deadline passes, instead of
asserting on a single call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobs_core.driver import Driver
from jobs_core.message import Delivery, Message, QueueStats

#: Environment variable with the longest wait, in seconds, for something that
#: should happen (a message arriving, stats catching up). Default 10.
TIMEOUT_VARIABLE = "JOBS_CONFORMANCE_TIMEOUT"
#: How long a test watches for a message that must not arrive.
QUIET_PERIOD = 0.5
#: Lease used when a test does not care about leases.
LONG_LEASE = 60.0
#: Name of the job in the messages the suite writes.
JOB_NAME = "conformance.job"


def delivery_timeout() -> float:
    """Longest a test waits for something that should happen (``$JOBS_CONFORMANCE_TIMEOUT``, default 10 s).

    A test fails no sooner than this when a driver never delivers, so a fast
    backend may lower it; a slow one may raise it.
    """
    return float(os.environ.get(TIMEOUT_VARIABLE) or 10.0)


def message(queue: str, payload: Any = None, **fields: Any) -> Message:
    """A message for ``queue`` named :data:`JOB_NAME`."""
    return Message(name=JOB_NAME, payload=payload, queue=queue, **fields)


def messages(queue: str, count: int, **fields: Any) -> list[Message]:
    """``count`` messages whose payloads are ``{"n": 0}`` to ``{"n": count - 1}``."""
    return [message(queue, {"n": n}, **fields) for n in range(count)]


def enqueue_one(driver: Driver, msg: Message) -> str:
    """Enqueue ``msg`` and return its id (failing the test if it was dropped)."""
    (ident,) = driver.enqueue([msg])
    assert ident is not None, "enqueue dropped a message that has no unique key"
    return ident


def reserve_until(
    driver: Driver,
    queues: Sequence[str],
    count: int,
    *,
    lease: float = LONG_LEASE,
    limit: int = 100,
    timeout: float | None = None,
) -> list[Delivery]:
    """Reserve until ``count`` deliveries arrived or ``timeout`` passed.

    Returns what arrived, in the order it arrived (possibly fewer than
    ``count``, never more than were handed out).
    """
    deadline = time.monotonic() + (delivery_timeout() if timeout is None else timeout)
    found: list[Delivery] = []
    while len(found) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        found += driver.reserve(
            list(queues), limit=min(limit, count - len(found)), lease=lease, timeout=min(remaining, 0.5)
        )
    return found


def reserve_one(
    driver: Driver, queue: str, *, lease: float = LONG_LEASE, timeout: float | None = None
) -> Delivery:
    """The next delivery from ``queue``; fails the test if none arrives in time."""
    wait = delivery_timeout() if timeout is None else timeout
    found = reserve_until(driver, [queue], 1, lease=lease, timeout=wait)
    assert found, f"no message arrived on {queue!r} within {wait} s"
    return found[0]


def assert_nothing(driver: Driver, queues: Sequence[str], wait: float = QUIET_PERIOD) -> None:
    """Fail if anything can be reserved from ``queues`` within ``wait`` seconds."""
    found = reserve_until(driver, queues, 1, timeout=wait)
    assert not found, f"expected no message, got {[d.message for d in found]}"


def wait_for(condition: Callable[[], bool], timeout: float | None = None, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + (delivery_timeout() if timeout is None else timeout)
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stats_become(
    driver: Driver, queue: str | None, timeout: float | None = None, **expected: int
) -> QueueStats:
    """Poll ``stats(queue)`` until the named counts equal ``expected``; return the last stats.

    The caller asserts on the result, so a mismatch shows every count.
    """
    last = driver.stats(queue)

    def matches() -> bool:
        nonlocal last
        last = driver.stats(queue)
        return all(getattr(last, key) == value for key, value in expected.items())

    wait_for(matches, timeout)
    return last


def payloads(deliveries: Sequence[Delivery]) -> list[Any]:
    """The payloads of ``deliveries``, in order."""
    return [d.message.payload for d in deliveries]


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    """The message ids of ``deliveries``, in order."""
    return [d.id for d in deliveries]
