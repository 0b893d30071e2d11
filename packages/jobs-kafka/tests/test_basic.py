from __future__ import annotations

import time

from jobs_core.message import Message
from jobs_kafka import KafkaDriver


def test_enqueue_reserve_ack_in_order(driver: KafkaDriver) -> None:
    messages = [Message(name="t", payload={"i": i}, queue="work") for i in range(5)]
    assert driver.enqueue(messages) == [m.id for m in messages]
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 5 and time.monotonic() < deadline:
        got += driver.reserve(["work"], limit=5, lease=30, timeout=1)
    assert [d.message.payload["i"] for d in got] == [0, 1, 2, 3, 4]
    for d in got:
        driver.ack(d)
    assert driver.reserve(["work"], limit=5, timeout=0.5) == []
    stats = driver.stats("work")
    assert stats.pending == 0 and stats.reserved == 0
