"""``stats`` over many queues: one batch of requests, and never stale for this process's own work."""

from __future__ import annotations

import time
from collections.abc import Callable

from jobs_kafka import KafkaDriver

from .helpers import jobs, reserve_until

QUEUES = 40


def test_stats_of_40_queues_as_jobs_stats_asks_take_under_2_s(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    writer = make_driver()
    names = [f"q{n:02d}" for n in range(QUEUES)]
    for n, queue in enumerate(names):
        writer.enqueue(jobs(queue, 1 + n % 3))
        writer.enqueue(jobs(queue, 1, available_at=time.time() + 600))
    writer.enqueue(jobs("q00", 1))
    (failing,) = reserve_until(writer, ["q00"], 1)
    writer.fail(failing, "ValueError: boom")
    writer.close()  # commits the finished offset
    observer = make_driver()
    observer.stats()  # the first call of a process also connects its clients
    started = time.monotonic()
    # What `jobs stats` does: list the queues, then one call per queue and one for the total.
    listed = observer.queues()
    per_queue = {queue: observer.stats(queue) for queue in listed}
    total = observer.stats()
    elapsed = time.monotonic() - started
    assert listed == names
    assert {q: (s.pending, s.delayed, s.failed) for q, s in per_queue.items()} == {
        queue: (1 + n % 3, 1, int(queue == "q00")) for n, queue in enumerate(names)
    }
    assert (total.pending, total.delayed, total.failed) == (
        sum(1 + n % 3 for n in range(QUEUES)),
        QUEUES,
        1,
    )
    assert elapsed < 2.0, f"stats of {QUEUES} queues took {elapsed:.2f} s"


def test_stats_answered_from_a_batch_still_count_this_process_s_own_work(
    make_driver: Callable[..., KafkaDriver],
) -> None:
    driver = make_driver()
    driver.enqueue(jobs("a", 2) + jobs("b", 1))
    assert driver.queues() == ["a", "b"]
    assert driver.stats("a").pending == 2
    driver.enqueue(jobs("a", 3))  # within the batch's age: it is measured again
    assert driver.stats("a").pending == 5
    got = reserve_until(driver, ["a"], 5)
    assert driver.queues() == ["a", "b"]
    assert (driver.stats("a").pending, driver.stats("a").reserved) == (0, 5)
    driver.ack_many(got[:2])
    driver.fail(got[2], "ValueError: boom")
    stats = driver.stats("a")
    assert (stats.pending, stats.reserved, stats.failed) == (0, 2, 1)
    assert driver.stats().pending == 1
