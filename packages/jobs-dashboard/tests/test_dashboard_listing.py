"""The Jobs page (jobs by state, with progress) and the Workers page, through Starlette's TestClient."""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest import XSS
from jobs_core import JobsApp
from jobs_core.status import Progress
from jobs_core.worker_records import WorkerRecord
from jobs_dashboard_test_jobs import explode, ok
from starlette.testclient import TestClient

BACKENDS = ["memory", "sqlite", "postgresql", "mariadb"]


def job_row(page: str, job_id: str) -> str:
    row = re.search(rf'<tr data-id="{job_id}">(.*?)</tr>', page, re.S)
    assert row, f"no row of {job_id} in the page"
    return row.group(1)


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_jobs_page_shows_running_jobs_with_progress_and_filters_by_state_and_queue(
    jobs: JobsApp, client: TestClient
) -> None:
    running = jobs.dispatch(ok.on_queue("reports"), {"n": 1})
    waiting = jobs.dispatch(ok.on_queue("reports"), {"n": 2}, delay=3600)
    other = jobs.dispatch(ok.on_queue("emails"), {"n": 3})
    [delivery] = jobs.driver.reserve(["reports"], 1, lease=60)
    assert delivery.message.id == running
    jobs.driver.save_progress(delivery, Progress(3, 12, note="<b>rows</b>"), "worker-1")

    page = client.get("/jobs/list").text  # running by default
    row = job_row(page, str(running))
    assert '<progress value="25" max="100">' in row and "worker-1" in row
    assert "&lt;b&gt;rows&lt;/b&gt;" in row and "<b>rows</b>" not in page
    assert f'data-id="{waiting}"' not in page and f'data-id="{other}"' not in page
    assert 'hx-get="/jobs/list/live?state=running' in page
    assert re.findall(r'href="([^"]*)" aria-current="page"', page) == ["/jobs/list"]  # not "Look up a job"

    delayed = client.get("/jobs/list", params={"state": "delayed"}).text
    assert f'data-id="{waiting}"' in delayed and f'data-id="{running}"' not in delayed
    queued = client.get("/jobs/list", params={"state": "queued", "queue": "emails"}).text
    assert f'data-id="{other}"' in queued
    assert (
        "No queued jobs in reports"
        in client.get("/jobs/list", params={"state": "queued", "queue": "reports"}).text
    )

    live = client.get("/jobs/list/live", params={"state": "running"}).text
    assert "<html" not in live and f'data-id="{running}"' in live


@pytest.mark.parametrize("backend_url", ["memory", "sqlite", "postgresql"], indirect=True)
def test_finished_jobs_show_results_and_errors_as_text(jobs: JobsApp, client: TestClient) -> None:
    done = jobs.dispatch(ok.on_queue("reports"), {"text": XSS})
    failed = jobs.dispatch(explode.on_queue("reports"), {"message": XSS})
    assert jobs.work("reports", max_jobs=2) == 2

    page = client.get("/jobs/list", params={"state": "finished"}).text
    assert "succeeded" in job_row(page, str(done)) and "failed" in job_row(page, str(failed))
    assert "<script>window.__jobs_xss" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__jobs_xss" in page
    only_failed = client.get("/jobs/list", params={"state": "failed"}).text
    assert f'data-id="{failed}"' in only_failed and f'data-id="{done}"' not in only_failed


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_jobs_page_refuses_an_unknown_state_and_pages_through_many_jobs(
    jobs: JobsApp, client: TestClient
) -> None:
    assert client.get("/jobs/list", params={"state": "<b>lost</b>"}).status_code == 400
    ids = [jobs.dispatch(ok.on_queue("bulk"), {"n": n}) for n in range(55)]
    first = client.get("/jobs/list", params={"state": "queued"}).text
    assert first.count("<tr data-id=") == 50 and "next →" in first
    second = client.get("/jobs/list", params={"state": "queued", "offset": 50}).text
    assert [f'data-id="{i}"' in second for i in ids[50:]] == [True] * 5
    assert second.count("<tr data-id=") == 5 and "← previous" in second


def record(name: str, **fields: object) -> WorkerRecord:
    now = time.time()
    values: dict[str, object] = {
        "id": f"{name}:abcd",
        "name": name,
        "hostname": "web-3",
        "pid": 4182,
        "queues": ("default", "emails"),
        "concurrency": 8,
        "started_at": now - 60,
        "last_seen": now - 2,
        "processed": 1234,
        "failed": 5,
        "version": "0.1.0",
    }
    values.update(fields)
    return WorkerRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_workers_page_lists_the_workers_seen_recently(jobs: JobsApp, client: TestClient) -> None:
    jobs.driver.save_worker(record("web-3:4182"))
    jobs.driver.save_worker(record("<script>x</script>", last_seen=time.time() - 3600))

    page = client.get("/workers").text
    row = re.search(r'<tr data-id="web-3:4182:abcd">(.*?)</tr>', page, re.S)
    assert row, page
    assert "default, emails" in row.group(1) and ">1234<" in row.group(1) and ">8<" in row.group(1)
    assert "<script>x" not in page and "&lt;script&gt;x" not in page  # stale: not listed
    assert 'href="/workers"' in page and 'href="/jobs/list"' in page


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_a_running_worker_appears_and_is_gone_once_it_stops(jobs: JobsApp, client: TestClient) -> None:
    worker = jobs.worker("reports", concurrency=2, install_signal_handlers=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "reports" not in client.get("/workers").text and time.monotonic() < deadline:
            time.sleep(0.1)
        page = client.get("/workers").text
        assert re.search(r'<td class="queues">reports</td>\s*<td class="n">2</td>', page), page
    finally:
        worker.stop()
        thread.join(30)
    assert "No workers seen recently." in client.get("/workers").text


@pytest.mark.parametrize("backend_url", ["kafka"], indirect=True)
def test_a_driver_without_the_capabilities_shows_neither_page(client: TestClient) -> None:
    page = client.get("/driver").text
    assert 'href="/workers"' not in page and 'href="/jobs/list"' not in page
    assert client.get("/workers").status_code == 404
    assert client.get("/jobs/list").status_code == 404
