"""The screenshots of docs/guide/dashboard.md: ``python packages/jobs-dashboard/tests/screenshots.py DIR``.

Fills a SQLite file with example jobs (some waiting, some delayed, some
failed, two schedules), runs ``jobs dashboard`` on it while a worker drains
jobs for a few seconds (so that the throughput chart has a line), and has
headless Chromium photograph the main pages.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import threading
import time
from typing import Any

from browser import CHROMIUM, CHROMIUM_ARGS, dashboard_process
from jobs_core import JobsApp, job
from jobs_core.status import Progress
from jobs_core.worker_records import WorkerRecord
from jobs_core.workflows import Batch, Chain


@job(name="billing.charge_card", max_retries=0)
def charge_card(payload: Any) -> None:
    """Fails: the card was declined."""
    raise RuntimeError(f"card declined for customer {payload['customer']}: insufficient funds")


@job(name="emails.send_welcome")
def send_welcome(payload: Any) -> None:
    """Sends nothing; takes a moment."""
    time.sleep(0.01)


@job(name="imports.load_rows")
def load_rows(payload: Any) -> None:
    """Loads nothing."""


@job(name="reports.build_report")
def build_report(payload: Any) -> None:
    """Builds nothing."""


def fill(app: JobsApp) -> None:
    for customer in ("acme-corp", "globex", "initech"):
        app.dispatch(charge_card, {"customer": customer, "amount_cents": 4200})
    app.work("default", max_jobs=3)
    app.dispatch(charge_card, {"customer": "<script>alert('hi')</script>", "amount_cents": 1})
    app.work("default", max_jobs=1)
    for n in range(40):
        app.dispatch(send_welcome.on_queue("emails"), {"user_id": n})
    for n in range(12):
        app.dispatch_later(3600, build_report.on_queue("reports"), {"report": "weekly", "team": n})
    app.schedule_cron(
        build_report.on_queue("reports"), "0 7 * * mon", {"report": "weekly"}, name="weekly-report"
    )
    app.schedule_every(send_welcome.on_queue("emails"), 900, {"digest": True}, name="digest-every-15-min")
    app.pause_schedule("digest-every-15-min")
    app.pause_queue("reports")


def workflows(app: JobsApp) -> str:
    """Two batches and a chain, partly done; a running job that reported progress (its id)."""
    done = Batch(
        app, [(load_rows.on_queue("imports"), {"file": f"part-{n}.csv"}) for n in range(8)]
    ).dispatch()
    Chain(app, [(build_report.on_queue("imports"), {"step": n}) for n in range(3)]).dispatch()
    app.work("imports", max_jobs=6)
    Batch(app, [(load_rows.on_queue("imports"), {"file": f"day-{n}.csv"}) for n in range(20)]).dispatch()
    app.work("imports", max_jobs=5)
    assert done
    running = app.dispatch(load_rows.on_queue("imports-big"), {"file": "customers-2026.csv"})
    assert running is not None
    [delivery] = app.driver.reserve(["imports-big"], 1, lease=3600)
    app.driver.save_progress(
        delivery, Progress(3400, 12000, note="customers-2026.csv: row 3400"), "worker-7f3a"
    )
    return running


def workers(app: JobsApp) -> None:
    """Three workers seen recently, as their beacon threads record them."""
    now = time.time()
    for name, queues, concurrency, done, failed in (
        ("worker-7f3a:2101", ("imports", "imports-big"), 4, 18_204, 3),
        ("worker-7f3a:2102", ("imports", "imports-big"), 4, 17_988, 1),
        ("web-2:88", ("default", "emails"), 16, 240_517, 4),
    ):
        app.driver.save_worker(
            WorkerRecord(
                f"{name}:0a1b",
                name,
                name.split(":")[0],
                int(name.split(":")[1]),
                queues,
                concurrency,
                now - 7200,
                now - 2,
                done,
                failed,
                "0.1.0",
            )
        )


def traffic(app: JobsApp, seconds: float) -> None:
    """Dispatch and run jobs for ``seconds`` (a varying rate), leaving some waiting."""
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        step += 1
        for n in range(5 + (step * 7) % 23):
            app.dispatch(send_welcome.on_queue("emails"), {"user_id": 1000 + n})
        app.work("emails", max_jobs=4 + (step * 5) % 19)
        time.sleep(0.5)


def main(out: pathlib.Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/jobs.db"
        app = JobsApp(url, load_plugins=False)
        for target in (charge_card, send_welcome, build_report, load_rows):
            app.register(target)
        fill(app)
        running = workflows(app)
        with dashboard_process(url) as base, sync_playwright() as playwright:
            worker = threading.Thread(target=traffic, args=(app, 16.0))
            worker.start()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            time.sleep(14)  # the chart fills while the worker runs
            page.goto(base + "/queues")
            page.screenshot(path=str(out / "dashboard-queues.png"))
            print(out / "dashboard-queues.png")
            worker.join()
            workers(app)
            shots = {
                "dashboard-failed.png": "/failed",
                "dashboard-schedules.png": "/schedules",
                "dashboard-batches.png": "/batches",
                "dashboard-job.png": f"/jobs?id={running}",
                "dashboard-jobs.png": "/jobs/list",
                "dashboard-workers.png": "/workers",
            }
            for name, path in shots.items():
                page.goto(base + path)
                page.screenshot(path=str(out / name))
                print(out / name)
            page.goto(base + "/failed")
            page.click("table.failed tbody tr:first-child a")
            page.screenshot(path=str(out / "dashboard-failed-job.png"))
            print(out / "dashboard-failed-job.png")
            browser.close()
        app.close()


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
