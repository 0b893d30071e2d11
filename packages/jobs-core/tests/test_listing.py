"""Jobs by state and workers seen recently, through ``JobsApp`` and the beacon (memory driver).

A live worker and the CLI are tested on every driver that lists, in tests/test_listing_backends.py.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pytest
from jobs_core import Job, JobsApp
from jobs_core.driver import Capability
from jobs_core.errors import ConfigurationError, UnsupportedOperation
from jobs_core.worker_records import WorkerBeacon, WorkerRecord


class Hold(Job):
    job_name = "tests.listing.hold"

    def handle(self, payload: Any) -> Any:
        return payload


@pytest.fixture
def url() -> str:
    return f"memory://listing-{uuid.uuid4().hex[:8]}"


def test_the_beacon_renews_the_record_and_survives_a_failing_backend(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with JobsApp(url, load_plugins=False) as app:
        counts = [0]
        beacon = WorkerBeacon(app.driver, "host:1", ["default"], 1, lambda: (counts[0], 0), interval=0.05)
        stop = threading.Event()
        beacon.start(stop)
        deadline = time.monotonic() + 10
        while not app.workers() and time.monotonic() < deadline:
            time.sleep(0.01)
        counts[0] = 7
        while app.workers()[0].processed != 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.workers()[0].processed == 7

        saved = app.driver.save_worker
        failures = [0]

        def failing(record: WorkerRecord) -> None:
            failures[0] += 1
            raise ConnectionError("backend down")

        app.driver.save_worker = failing  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="jobs_core.worker"):
            while failures[0] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert failures[0] >= 2 and "backend down" in caplog.text
        app.driver.save_worker = saved  # type: ignore[method-assign]
        stop.set()
        beacon.join(10)
        assert not beacon.thread or not beacon.thread.is_alive()
        assert app.workers() == []


def test_bad_listing_arguments_are_named(url: str) -> None:
    with JobsApp(url, load_plugins=False) as app:
        with pytest.raises(ConfigurationError, match="state must be one of queued, delayed"):
            app.jobs("done")
        with pytest.raises(ConfigurationError, match="limit must be an int >= 0"):
            app.jobs("queued", limit=-1)
        with pytest.raises(ConfigurationError, match="offset must be an int >= 0"):
            app.jobs("queued", offset=True)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="queue must be a non-empty str"):
            app.jobs("queued", queue="")


def test_finished_merges_the_finished_states_newest_first(url: str) -> None:
    with JobsApp(url, load_plugins=False) as app:
        driver = app.driver
        ids = [app.dispatch(Hold, n) for n in range(3)]
        held = {d.message.id: d for d in driver.reserve(["default"], 3, lease=60)}
        driver.ack_results([held[ids[0]]], ["1"])
        time.sleep(0.01)
        driver.fail(held[ids[1]], "RuntimeError: no")
        time.sleep(0.01)
        driver.ack_results([held[ids[2]]], ["3"])
        assert [s.id for s in app.jobs("finished")] == [ids[2], ids[1], ids[0]]
        assert [s.id for s in app.jobs("finished", limit=1, offset=1)] == [ids[1]]
        assert [s.state for s in app.jobs("finished")] == ["succeeded", "failed", "succeeded"]


def test_a_driver_without_the_capabilities_says_which(url: str) -> None:
    with JobsApp(url, load_plugins=False) as app:
        driver = app.driver
        driver.capabilities = driver.capabilities - {Capability.WORKERS, Capability.JOB_LISTING}  # type: ignore[misc]
        with pytest.raises(UnsupportedOperation, match="does not support workers"):
            app.workers()
        with pytest.raises(UnsupportedOperation, match="does not support job_listing"):
            app.jobs()
