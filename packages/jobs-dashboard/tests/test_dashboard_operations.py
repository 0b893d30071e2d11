"""Paused queues, batches and chains, and a job's status page, through Starlette's TestClient."""

from __future__ import annotations

import html
import re

import pytest
from conftest import XSS
from jobs_core import JobsApp
from jobs_core.status import Progress
from jobs_core.workflows import Batch, Chain
from jobs_dashboard_test_jobs import explode, ok
from starlette.testclient import TestClient

BACKENDS = ["memory", "sqlite", "postgresql", "mariadb"]


def csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def queue_row(page: str, queue: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', page, re.S)
    assert row, page
    return row.group(1)


@pytest.mark.parametrize("backend_url", [*BACKENDS, "kafka"], indirect=True)
def test_pause_and_resume_a_queue(jobs: JobsApp, client: TestClient) -> None:
    jobs.dispatch(ok.on_queue("reports"), {"n": 1})
    page = client.get("/queues").text
    assert re.search(r'class="queue-state">running<', queue_row(page, "reports"))

    response = client.post(
        "/queues/pause",
        data={"csrf_token": csrf(page), "queue": "reports", "change": "pause"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert jobs.paused_queues() == ["reports"]
    page = client.get(response.headers["location"]).text
    assert "Paused the queue" in page
    assert re.search(r'class="queue-state">paused<', queue_row(page, "reports"))
    assert 'value="resume"' in queue_row(page, "reports")

    client.post("/queues/pause", data={"csrf_token": csrf(page), "queue": "reports", "change": "resume"})
    assert jobs.paused_queues() == []


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_a_paused_queue_without_jobs_is_listed(jobs: JobsApp, client: TestClient) -> None:
    jobs.pause_queue("quiet")
    page = client.get("/queues").text
    assert re.search(r'class="queue-state">paused<', queue_row(page, "quiet"))


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_pausing_without_the_csrf_token_is_refused(jobs: JobsApp, client: TestClient) -> None:
    client.get("/queues")
    response = client.post("/queues/pause", data={"queue": "reports", "change": "pause"})
    assert response.status_code == 403
    assert jobs.paused_queues() == []


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_batches_page_shows_progress_and_failures(jobs: JobsApp, client: TestClient) -> None:
    batch_id = Batch(jobs, [(ok, {"n": 1}), (explode, {"message": "no"}), (ok, {"n": 3})]).dispatch()
    chain_id = Chain(jobs, [(ok, {"n": 1}), (ok, {"n": 2})]).dispatch()
    jobs.work("default", max_jobs=2)  # the first two jobs of the batch

    page = client.get("/batches")
    assert page.status_code == 200
    row = re.search(rf'<tr data-id="{batch_id}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert "batch" in row.group(1) and '<progress value="2" max="3">' in row.group(1)
    assert re.search(r'class="n failed">1<', row.group(1))
    assert f'data-id="{chain_id}"' in page.text

    detail = client.get(f"/batches/detail?id={batch_id}")
    assert detail.status_code == 200
    assert re.search(r'class="failed">1<', detail.text)
    status = jobs.driver.workflow(batch_id)
    assert status is not None and status.failed_ids
    assert status.failed_ids[0] in detail.text
    assert "Cancel the batch" in detail.text

    only_chains = client.get("/batches?kind=chain").text
    assert f'data-id="{chain_id}"' in only_chains and f'data-id="{batch_id}"' not in only_chains


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_cancel_a_running_batch(jobs: JobsApp, client: TestClient) -> None:
    batch_id = Batch(jobs, [(ok, {"n": 1}), (ok, {"n": 2})]).dispatch()
    page = client.get(f"/batches/detail?id={batch_id}").text

    response = client.post(
        "/batches/cancel", data={"csrf_token": csrf(page), "id": batch_id}, follow_redirects=False
    )

    assert response.status_code == 303
    record = jobs.driver.workflow(batch_id)
    assert record is not None and record.status == "cancelled"
    after = client.get(response.headers["location"]).text
    assert "Cancelled the batch" in after and "Cancel the batch" not in after


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_cancel_a_running_chain(jobs: JobsApp, client: TestClient) -> None:
    chain_id = Chain(jobs, [(ok, {"n": 1}), (ok, {"n": 2})]).dispatch()
    page = client.get(f"/batches/detail?id={chain_id}").text
    assert "Cancel the chain" in page

    response = client.post(
        "/batches/cancel", data={"csrf_token": csrf(page), "id": chain_id}, follow_redirects=False
    )

    assert response.status_code == 303
    record = jobs.driver.workflow(chain_id)
    assert record is not None and (record.status, record.cancelled) == ("cancelled", 2)
    after = client.get(response.headers["location"]).text
    assert "Cancelled the chain" in after and "Cancel the chain" not in after
    missing = client.post("/batches/cancel", data={"csrf_token": csrf(page), "id": "nope"})
    assert missing.status_code == 404


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_an_unknown_batch_is_not_found(client: TestClient) -> None:
    response = client.get("/batches/detail?id=nope")
    assert response.status_code == 404
    assert "no batch or chain with id" in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_job_status_page_of_a_waiting_job_and_cancel(jobs: JobsApp, client: TestClient) -> None:
    job_id = jobs.dispatch(ok.on_queue("reports"), {"n": 1})
    assert job_id is not None
    page = client.get("/jobs", params={"id": job_id})
    assert page.status_code == 200
    assert re.search(r'class="state">queued', page.text)
    assert re.search(r'class="queue">reports<', page.text)
    assert "Cancel the job" in page.text

    response = client.post(
        "/jobs/cancel", data={"csrf_token": csrf(page.text), "id": job_id}, follow_redirects=False
    )
    assert response.status_code == 303
    assert jobs.status(job_id).state == "cancelled"
    after = client.get(response.headers["location"]).text
    assert "it was waiting, and is removed" in after
    assert re.search(r'class="state">cancelled', after) and "Cancel the job" not in after


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_job_status_page_shows_progress_of_a_running_job(jobs: JobsApp, client: TestClient) -> None:
    job_id = jobs.dispatch(ok.on_queue("reports"), {"n": 1})
    [delivery] = jobs.driver.reserve(["reports"], 1, lease=60)
    jobs.driver.save_progress(delivery, Progress(3, 12, note="<b>rows</b>"), "worker-1")

    page = client.get("/jobs", params={"id": job_id}).text

    assert re.search(r'class="state">running', page)
    assert '<progress value="25" max="100">' in page
    assert "&lt;b&gt;rows&lt;/b&gt;" in page and "<b>rows</b>" not in page
    assert "worker-1" in page and "Cancel the job" in page

    response = client.post(
        "/jobs/cancel", data={"csrf_token": csrf(page), "id": job_id}, follow_redirects=False
    )
    assert response.status_code == 303
    assert jobs.status(job_id).cancel_requested
    after = client.get(response.headers["location"]).text
    assert "Asked the job&#39;s worker to stop it" in after
    assert "(cancellation requested)" in after and "Cancel the job" not in after


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_result_and_error_are_shown_as_text(jobs: JobsApp, client: TestClient) -> None:
    done = jobs.dispatch(ok.on_queue("reports"), {"text": XSS})
    failed = jobs.dispatch(explode.on_queue("reports"), {"message": XSS})
    assert done is not None and failed is not None
    assert jobs.work("reports", max_jobs=2) == 2

    for job_id, state in ((done, "succeeded"), (failed, "failed")):
        page = client.get("/jobs", params={"id": job_id}).text
        assert re.search(rf'class="state">{state}', page)
        assert "<script>window.__jobs_xss" not in page and "<img src=x" not in page
        assert html.escape("<script>window.__jobs_xss = 1;", quote=False) in page
        assert "Cancel the job" not in page


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_an_unknown_job_is_not_found(jobs: JobsApp, client: TestClient) -> None:
    page = client.get("/jobs", params={"id": "<script>no-such-job</script>"})
    assert page.status_code == 404
    assert "Not found" in page.text and "Traceback" not in page.text
    assert "<script>no-such-job" not in page.text

    form = client.get("/jobs")
    assert form.status_code == 200 and 'name="id"' in form.text

    waiting = jobs.dispatch(ok, {"n": 1})
    token = csrf(client.get("/jobs", params={"id": waiting}).text)
    response = client.post(
        "/jobs/cancel", data={"csrf_token": token, "id": "no-such-job"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "There is no such job" in client.get(response.headers["location"]).text
