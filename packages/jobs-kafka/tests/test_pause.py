"""Pausing a queue on Kafka: the flag in the control topic, the worker and its consumer.

Two workers, each with its own driver (its own consumer in the queue's
group), drain a queue of short jobs; the queue is paused from a third
driver. No job starts more than a second after the pause, the consumers
pause their partitions, and after the resume the rest is run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jobs_core import JobsApp, job
from jobs_kafka import KafkaDriver

STARTED: list[float] = []
LOCK = threading.Lock()


@job(name="kafka.pause.step", queue="work")
def step(payload: Any) -> None:
    with LOCK:
        STARTED.append(time.monotonic())
    time.sleep(0.01)


def test_a_paused_queue_starts_no_job_within_a_second_then_resumes(
    make_driver: Callable[..., KafkaDriver], kafka_url: Callable[..., str]
) -> None:
    STARTED.clear()
    url = kafka_url(partitions=2)
    with JobsApp(url, load_plugins=False) as admin:
        admin.dispatch_many(step, [{"n": n} for n in range(1500)])
        workers, threads = [], []
        for _ in range(2):
            app = JobsApp(url, load_plugins=False)
            app.register(step)
            worker = app.worker(["work"], concurrency=2, install_signal_handlers=False)
            workers.append(worker)
            threads.append(threading.Thread(target=worker.run, daemon=True))
            threads[-1].start()
        try:
            deadline = time.monotonic() + 60
            while len(STARTED) < 30:
                assert time.monotonic() < deadline, "the workers started no job"
                time.sleep(0.05)
            assert admin.pause_queue("work") is True
            paused_at = time.monotonic()
            assert admin.paused_queues() == ["work"]
            time.sleep(2.0)
            with LOCK:
                late = [t for t in STARTED if t > paused_at + 1.0]
                count = len(STARTED)
            assert late == [], f"{len(late)} jobs started more than 1 s after the pause"
            held = [w.driver for w in workers]
            assert all(isinstance(d, KafkaDriver) and d.consumer.held for d in held)
            assert admin.resume_queue("work") is True
            deadline = time.monotonic() + 60
            while len(STARTED) < min(1500, count + 100):
                assert time.monotonic() < deadline, "no job started after the resume"
                time.sleep(0.05)
        finally:
            for worker in workers:
                worker.stop(force=True)
            for thread in threads:
                thread.join(30)
