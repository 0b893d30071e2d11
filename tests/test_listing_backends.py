"""Jobs by state and workers seen recently on every driver that lists them: a live worker and the CLI."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from click.testing import CliRunner
from jobs_core import Job, JobsApp
from jobs_core.cli import cli
from jobs_core.worker_records import WorkerRecord


class Hold(Job):
    job_name = "tests.listing.hold"
    started = threading.Event()
    release = threading.Event()

    def handle(self, payload: Any) -> Any:
        self.progress(1, 4, "first quarter")
        Hold.started.set()
        Hold.release.wait(30)
        return {"done": payload}


def test_a_running_worker_is_listed_with_its_counts_and_removed_when_it_stops(listing_url: str) -> None:
    Hold.started.clear()
    Hold.release.clear()
    with JobsApp(listing_url, load_plugins=False) as app:
        app.register(Hold)
        first = app.dispatch(Hold, 1)
        worker = app.worker(["default", "mail"], concurrency=2, install_signal_handlers=False)
        runner = threading.Thread(target=worker.run)
        runner.start()
        try:
            assert Hold.started.wait(30)
            [seen] = app.workers()
            assert (seen.queues, seen.concurrency, seen.processed) == (("default", "mail"), 2, 0)
            assert seen.name == worker._tracker.name and seen.pid > 0 and seen.version
            [running] = app.jobs("running")
            assert (running.id, running.queue) == (first, "default")
            Hold.release.set()
            assert app.result(first, timeout=30) == {"done": 1}
        finally:
            Hold.release.set()
            worker.stop()
            runner.join(30)
        assert app.workers() == []
        [finished] = app.jobs("finished")
        assert (finished.id, finished.state) == (first, "succeeded")


def test_cli_lists_workers_and_jobs(listing_url: str) -> None:
    url = listing_url
    runner = CliRunner()
    with JobsApp(url, load_plugins=False) as app:
        now = time.time()
        app.driver.save_worker(
            WorkerRecord(
                "web-3:41:ab", "web-3:41", "web-3", 41, ("default",), 8, now - 60, now, 5120, 3, "0.1.0"
            )
        )
        waiting = app.dispatch(Hold, 1)
        shown = runner.invoke(cli, ["workers", "--url", url])
        assert shown.exit_code == 0, shown.output
        assert "web-3:41" in shown.output and "5120" in shown.output
        as_json = json.loads(runner.invoke(cli, ["workers", "--url", url, "--json"]).output)
        assert as_json[0]["queues"] == ["default"] and as_json[0]["processed"] == 5120
        listed = runner.invoke(cli, ["list", "--state", "queued", "--url", url])
        assert listed.exit_code == 0 and waiting in listed.output and "tests.listing.hold" in listed.output
        assert runner.invoke(cli, ["list", "--url", url]).output.strip() == "no running jobs"
        rows = json.loads(runner.invoke(cli, ["list", "--state", "queued", "--json", "--url", url]).output)
        assert [row["id"] for row in rows] == [waiting]
        bad = runner.invoke(cli, ["list", "--state", "done", "--url", url])
        assert bad.exit_code == 2 and "'done' is not one of" in bad.output
