"""Small helpers shared by the kafka driver tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from jobs_core.message import Delivery, Message
from jobs_kafka import KafkaDriver


def reserve_until(
    driver: KafkaDriver, queues: Sequence[str], count: int, timeout: float = 20.0, lease: float = 60.0
) -> list[Delivery]:
    """Reserve until ``count`` deliveries arrived or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    found: list[Delivery] = []
    while len(found) < count and time.monotonic() < deadline:
        found += driver.reserve(list(queues), limit=count - len(found), lease=lease, timeout=0.5)
    return found


def jobs(queue: str, count: int, **fields: object) -> list[Message]:
    """``count`` messages with payloads ``0 .. count-1``."""
    return [Message(name="t", payload=n, queue=queue, **fields) for n in range(count)]  # type: ignore[arg-type]
