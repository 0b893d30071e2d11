"""The dashboard in a real headless Chromium, against a ``jobs dashboard`` process on SQLite and PostgreSQL.

Each test drives the browser as an operator would: pages render, a retry
clicked in the browser puts the job back on its queue, an action sent
without the page's CSRF token is refused, and a payload holding a
``<script>`` shows as text and never runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM_ARGS, dashboard_process, require_chromium
from conftest import XSS, fresh_backend
from jobs_core import JobsApp

BACKENDS = ["sqlite", "postgresql"]
TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; script errors and dialogs are recorded."""
    context = chromium.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.dialogs = []
    tab.errors = []
    tab.console_errors = []
    tab.on("console", lambda message: message.type == "error" and tab.console_errors.append(message.text))
    tab.accept_dialogs = False

    def answer(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        if tab.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    tab.on("dialog", answer)
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A backend and one ``jobs dashboard`` process on it (on localhost, without a token), for the module."""
    with fresh_backend(request.param, tmp_path_factory.mktemp("site")) as url:
        with JobsApp(url, load_plugins=False) as app:
            app.driver.ping()  # the schema exists before the dashboard reads it
        with dashboard_process(url) as base:
            yield url, base


@pytest.fixture
def backend_url(site: tuple[str, str]) -> str:
    """The module's backend (each test works on queues of its own)."""
    return site[0]


@pytest.fixture
def dashboard(site: tuple[str, str]) -> str:
    """The base URL of the module's dashboard."""
    return site[1]


@pytest.fixture
def queue() -> str:
    """A queue name of this test alone."""
    return f"q{uuid.uuid4().hex[:10]}"


def test_pages_render(
    page: Any, dashboard: str, jobs: JobsApp, fail_job: Callable[..., str], queue: str
) -> None:
    from jobs_dashboard_test_jobs import ok

    reports, schedule = f"{queue}-reports", f"weekly-{queue}"
    fail_job({"to": "ada@example.com"}, queue=queue)
    jobs.dispatch(ok.on_queue(reports), {"n": 1})
    jobs.schedule_every(ok.on_queue(reports), 3600, {"report": "weekly"}, name=schedule)

    page.goto(f"{dashboard}/")
    assert page.url.endswith("/queues")
    assert page.locator("h1").inner_text() == "Queues"
    assert page.locator(f'tr[data-queue="{reports}"] td.pending').inner_text() == "1"
    assert page.locator(f'tr[data-queue="{queue}"] td.failed').inner_text() == "1"
    assert page.locator("svg.chart").count() == 2

    page.click("text=Failed jobs")
    assert page.locator("h1").inner_text() == "Failed jobs"
    assert "mail server said no" in page.locator("table.failed").inner_text()

    page.click("text=Schedules")
    assert page.locator(f'tr[data-name="{schedule}"] td.state').inner_text() == "active"
    page.click(f'tr[data-name="{schedule}"] button:has-text("Pause")')
    assert page.locator(".notice").inner_text() == "Paused the schedule."
    assert page.locator(f'tr[data-name="{schedule}"] td.state').inner_text() == "paused"

    page.click("text=Driver")
    assert "failed_store" in page.locator("ul.capabilities").inner_text()
    assert page.errors == []
    assert page.console_errors == []  # no script error, no Content-Security-Policy violation


def test_the_queue_counts_refresh_by_themselves(page: Any, dashboard: str, jobs: JobsApp, queue: str) -> None:
    from jobs_dashboard_test_jobs import ok
    from playwright.sync_api import expect

    jobs.dispatch(ok.on_queue(queue), {"n": 1})
    page.goto(f"{dashboard}/queues")
    pending = page.locator(f'tr[data-queue="{queue}"] td.pending')
    assert pending.inner_text() == "1"

    jobs.dispatch(ok.on_queue(queue), {"n": 2})

    expect(pending).to_have_text("2", timeout=20_000)  # htmx reads the counts again, no reload
    assert page.errors == [] and page.console_errors == []


def test_a_retry_clicked_in_the_browser_requeues_the_job(
    page: Any, dashboard: str, jobs: JobsApp, fail_job: Callable[..., str], queue: str
) -> None:
    job_id = fail_job({"to": "ada@example.com"}, queue=queue)
    page.goto(f"{dashboard}/failed")

    page.click(f'tr[data-id="{job_id}"] button:has-text("Retry")')

    assert page.locator(".notice").inner_text() == "Retried 1 failed job(s): back on their queues."
    assert page.locator(f'tr[data-id="{job_id}"]').count() == 0
    counts = jobs.stats(queue)
    assert counts["pending"] == 1 and counts["failed"] == 0


def test_an_action_without_the_token_is_refused(
    page: Any, dashboard: str, jobs: JobsApp, fail_job: Callable[..., str], queue: str
) -> None:
    job_id = fail_job(queue=queue)
    page.goto(f"{dashboard}/failed")

    status = page.evaluate(
        """async (id) => {
            const response = await fetch('/failed/retry', {method: 'POST', body: new URLSearchParams({id})});
            return [response.status, await response.text()];
        }""",
        job_id,
    )
    forged = page.evaluate(
        """async (id) => {
            const body = new URLSearchParams({id, csrf_token: 'forged-token-forged-token-forged-token-abc'});
            return (await fetch('/failed/delete', {method: 'POST', body})).status;
        }""",
        job_id,
    )

    assert status[0] == 403 and "CSRF" in status[1]
    assert forged == 403
    counts = jobs.stats(queue)
    assert counts["failed"] == 1 and counts["pending"] == 0


def test_a_script_in_a_payload_shows_as_text_and_does_not_run(
    page: Any, dashboard: str, fail_job: Callable[..., str]
) -> None:
    job_id = fail_job(XSS, message=f"rejected {XSS}")

    page.goto(f"{dashboard}/failed")
    assert "<script>window.__jobs_xss" in page.locator(f'tr[data-id="{job_id}"] code.payload').inner_text()
    page.click(f'tr[data-id="{job_id}"] a')
    assert "<script>window.__jobs_xss = 1" in page.locator("pre.payload").inner_text()
    assert "<img src=x onerror=" in page.locator("pre.error-text").inner_text()
    page.goto(f"{dashboard}/failed?q=__jobs_xss")
    assert page.locator(f'tr[data-id="{job_id}"]').count() == 1

    assert page.evaluate("window.__jobs_xss") is None
    assert page.title() != "owned"
    assert page.locator("script:not([src])").count() == 0
    assert page.dialogs == []
    assert page.errors == [] and page.console_errors == []


def test_delete_asks_first_and_retry_all(
    page: Any, dashboard: str, jobs: JobsApp, fail_job: Callable[..., str], queue: str
) -> None:
    billing = f"{queue}-billing"
    doomed = fail_job(queue=billing)
    for n in range(2):
        fail_job({"n": n}, queue=queue)
    page.goto(f"{dashboard}/failed")

    page.click(f'tr[data-id="{doomed}"] button:has-text("Delete")')  # the question is dismissed
    assert page.dialogs == ["Delete this failed job for good?"]
    assert jobs.stats(billing)["failed"] == 1
    page.accept_dialogs = True
    page.click(f'tr[data-id="{doomed}"] button:has-text("Delete")')
    assert page.locator(".notice").inner_text() == "Deleted 1 failed job(s)."
    assert jobs.stats(billing)["failed"] == 0

    page.select_option('select[name="queue"]', queue)
    page.click('button:has-text("Filter")')
    page.click(f'button:has-text("Retry all of queue {queue}")')
    assert page.locator(".notice").inner_text() == "Retried 2 failed job(s): back on their queues."
    assert jobs.stats(queue)["pending"] == 2


def test_sign_in_with_the_token(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with JobsApp(url, load_plugins=False) as app:
        app.driver.ping()
    with dashboard_process(url, env={"JOBS_DASHBOARD_TOKEN": TOKEN}) as base:
        page.goto(f"{base}/queues")
        assert page.url.endswith("/login")
        page.fill('input[name="token"]', "not-the-right-token-at-all")
        page.click('button:has-text("Sign in")')
        assert page.locator(".notice").inner_text() == "That is not the dashboard's token."
        page.fill('input[name="token"]', TOKEN)
        page.click('button:has-text("Sign in")')
        assert page.url.endswith("/queues")
        assert page.locator("h1").inner_text() == "Queues"
        page.click('button:has-text("Sign out")')
        page.goto(f"{base}/failed")
        assert page.url.endswith("/login")


def test_a_queue_paused_by_a_click_is_paused(page: Any, dashboard: str, jobs: JobsApp, queue: str) -> None:
    from jobs_dashboard_test_jobs import ok

    jobs.dispatch(ok.on_queue(queue), {"n": 1})
    page.goto(f"{dashboard}/queues")
    row = f'tr[data-queue="{queue}"]'
    assert page.locator(f"{row} td.queue-state").inner_text() == "running"

    page.click(f'{row} button:has-text("Pause")')

    assert page.locator(".notice").inner_text().startswith("Paused the queue")
    assert page.locator(f"{row} td.queue-state").inner_text() == "paused"
    assert queue in jobs.paused_queues()
    page.click(f'{row} button:has-text("Resume")')
    assert page.locator(f"{row} td.queue-state").inner_text() == "running"
    assert queue not in jobs.paused_queues()


def test_a_job_looked_up_shows_its_result_as_text(
    page: Any, dashboard: str, jobs: JobsApp, queue: str
) -> None:
    from jobs_dashboard_test_jobs import ok

    job_id = jobs.dispatch(ok.on_queue(queue), {"text": XSS})
    assert job_id is not None and jobs.work(queue, max_jobs=1) == 1

    page.goto(f"{dashboard}/queues")
    page.click("text=Look up a job")
    page.fill('input[name="id"]', job_id)
    page.click('button:has-text("Look up")')

    assert page.locator("dd.state").inner_text() == "succeeded"
    assert "<script>window.__jobs_xss = 1;" in page.locator("pre.result").inner_text()
    assert page.evaluate("window.__jobs_xss") is None
    assert page.title() != "owned" and page.errors == []

    page.fill('input[name="id"]', "no-such-job")
    page.click('button:has-text("Look up")')
    assert page.locator("p.not-found").inner_text().startswith("Not found")


def test_running_jobs_show_progress_that_refreshes_and_workers_are_listed(
    page: Any, dashboard: str, jobs: JobsApp, queue: str
) -> None:
    import time

    from jobs_core.status import Progress
    from jobs_core.worker_records import WorkerRecord
    from jobs_dashboard_test_jobs import ok
    from playwright.sync_api import expect

    job_id = jobs.dispatch(ok.on_queue(queue), {"n": 1})
    [delivery] = jobs.driver.reserve([queue], 1, lease=120)
    jobs.driver.save_progress(delivery, Progress(3, 12, note=XSS), "web-3:4182")
    worker_id = f"web-3:4182:{queue}"
    now = time.time()
    jobs.driver.save_worker(
        WorkerRecord(worker_id, XSS, "web-3", 4182, (queue,), 4, now - 60, now, 17, 2, "0.1.0")
    )

    page.goto(f"{dashboard}/queues")
    page.click('nav >> text="Jobs"')
    assert page.locator("h1").inner_text() == "Jobs"
    row = f'tr[data-id="{job_id}"]'
    progress = page.locator(f"{row} progress")
    assert progress.get_attribute("value") == "25"
    assert "<script>window.__jobs_xss = 1;" in page.locator(f"{row} .note").inner_text()

    jobs.driver.save_progress(delivery, Progress(9, 12, note="almost"), "web-3:4182")
    expect(progress).to_have_attribute("value", "75", timeout=20_000)  # htmx reads the table again

    page.click('nav >> text="Workers"')
    worker = page.locator(f'tr[data-id="{worker_id}"]')
    assert worker.locator("td.queues").inner_text() == queue
    assert worker.locator("td.processed").inner_text() == "17"
    assert "<script>window.__jobs_xss = 1;" in worker.locator("td.name").inner_text()
    assert page.evaluate("window.__jobs_xss") is None
    assert page.title() != "owned" and page.errors == [] and page.console_errors == []
    jobs.driver.remove_worker(worker_id)
