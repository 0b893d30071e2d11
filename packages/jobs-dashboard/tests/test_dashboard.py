"""The dashboard's pages and actions through Starlette's TestClient, on every first-party driver."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from conftest import XSS
from jobs_core import JobsApp
from jobs_dashboard import DashboardSettings, create_app
from jobs_dashboard_test_jobs import ok
from starlette.testclient import TestClient

BACKENDS = ["memory", "sqlite", "postgresql", "mariadb"]
#: Every first-party driver (Kafka keeps no completed count and has its own failed store).
EVERY_DRIVER = [*BACKENDS, "kafka"]


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def counts(jobs: JobsApp, queue: str) -> dict[str, int | None]:
    return jobs.stats(queue)


@pytest.mark.parametrize("backend_url", EVERY_DRIVER, indirect=True)
def test_pages_render_with_the_counts(
    jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]
) -> None:
    fail_job({"to": "ada@example.com"})
    jobs.dispatch(ok.on_queue("reports"), {"n": 1})
    jobs.dispatch_later(600, ok.on_queue("reports"), {"n": 2})

    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/queues"

    page = client.get("/queues")
    assert page.status_code == 200
    row = re.search(r'<tr data-queue="reports">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert re.search(r'class="n pending">1<', row.group(1))
    assert re.search(r'class="n delayed">1<', row.group(1))
    emails = re.search(r'<tr data-queue="emails">(.*?)</tr>', page.text, re.S)
    assert emails and re.search(r">1</a>", emails.group(1))  # one failed, linked to the failed store
    assert "<svg" in page.text  # the charts

    failed = client.get("/failed")
    assert failed.status_code == 200
    assert "tests.explode" in failed.text and "mail server said no" in failed.text
    assert "ada@example.com" in failed.text

    assert client.get("/schedules").status_code == 200
    driver = client.get("/driver")
    assert driver.status_code == 200 and "failed_store" in driver.text


@pytest.mark.parametrize("backend_url", EVERY_DRIVER, indirect=True)
def test_retry_puts_the_failed_job_back_on_its_queue(
    jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]
) -> None:
    job_id = fail_job({"to": "ada@example.com"}, queue="emails")
    token = csrf(client.get("/failed").text)

    response = client.post("/failed/retry", data={"csrf_token": token, "id": job_id}, follow_redirects=False)

    assert response.status_code == 303
    assert counts(jobs, "emails")["pending"] == 1
    assert counts(jobs, "emails")["failed"] == 0
    after = client.get(response.headers["location"])
    assert "Retried 1 failed job(s)" in after.text
    assert job_id not in after.text


@pytest.mark.parametrize("backend_url", EVERY_DRIVER, indirect=True)
def test_an_action_without_the_csrf_token_is_refused(
    jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]
) -> None:
    job_id = fail_job()
    client.get("/failed")  # the browser has a session

    missing = client.post("/failed/retry", data={"id": job_id})
    wrong = client.post("/failed/retry", data={"id": job_id, "csrf_token": "x" * 43})
    as_get = client.get("/failed/retry", params={"id": job_id})
    delete = client.post("/failed/delete", data={"id": job_id})

    assert missing.status_code == 403 and "CSRF" in missing.text
    assert wrong.status_code == 403
    assert as_get.status_code == 405
    assert delete.status_code == 403
    assert counts(jobs, "emails")["failed"] == 1
    assert counts(jobs, "emails")["pending"] == 0


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_a_token_from_another_session_is_refused(jobs: JobsApp, fail_job: Callable[..., str]) -> None:
    job_id = fail_job()
    application = create_app(jobs, DashboardSettings(sample_interval=3600))
    with (
        TestClient(application, base_url="http://localhost") as alice,
        TestClient(application, base_url="http://localhost") as mallory,
    ):
        alice_token = csrf(alice.get("/failed").text)
        mallory.get("/failed")
        refused = mallory.post("/failed/retry", data={"id": job_id, "csrf_token": alice_token})
        assert refused.status_code == 403
        assert counts(jobs, "emails")["failed"] == 1


@pytest.mark.parametrize("backend_url", EVERY_DRIVER, indirect=True)
def test_payloads_and_errors_are_escaped(
    jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]
) -> None:
    job_id = fail_job(XSS, message=f"bad input {XSS}")

    for path in ["/failed", f"/failed/job?id={job_id}", "/failed?q=script"]:
        html = client.get(path).text
        assert "<script>window" not in html, path
        assert "<img src=x" not in html, path
        assert "&lt;script&gt;window.__jobs_xss" in html, path
    detail = client.get("/failed/job", params={"id": job_id}).text
    assert "&lt;img src=x onerror=" in detail


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_search_filters_the_failed_store(
    jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]
) -> None:
    first = fail_job({"customer": "acme-corp"}, queue="emails")
    second = fail_job({"customer": "globex"}, queue="emails", message="timeout talking to SMTP")
    third = fail_job({"customer": "acme-corp"}, queue="billing")

    by_payload = client.get("/failed", params={"q": "ACME"}).text
    assert first in by_payload and third in by_payload and second not in by_payload
    assert "2 matches" in by_payload
    by_error = client.get("/failed", params={"q": "smtp"}).text
    assert second in by_error and first not in by_error
    by_queue = client.get("/failed", params={"q": "acme", "queue": "billing"}).text
    assert third in by_queue and first not in by_queue
    by_id = client.get("/failed", params={"q": second[-12:]}).text  # the random end of the id
    assert second in by_id and first not in by_id


@pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)
def test_retry_all_and_delete(jobs: JobsApp, client: TestClient, fail_job: Callable[..., str]) -> None:
    for n in range(3):
        fail_job({"n": n}, queue="emails")
    doomed = fail_job({"n": 9}, queue="billing")
    token = csrf(client.get("/failed").text)

    retried = client.post("/failed/retry-all", data={"csrf_token": token, "queue": "emails"})
    assert "Retried 3 failed job(s)" in retried.text
    assert counts(jobs, "emails")["pending"] == 3 and counts(jobs, "emails")["failed"] == 0
    assert counts(jobs, "billing")["failed"] == 1

    deleted = client.post("/failed/delete", data={"csrf_token": token, "id": doomed})
    assert "Deleted 1 failed job(s)" in deleted.text
    assert counts(jobs, "billing")["failed"] == 0
    assert counts(jobs, "billing")["pending"] == 0

    gone = client.post("/failed/retry", data={"csrf_token": token, "id": doomed})
    assert "That failed job is gone" in gone.text


@pytest.mark.parametrize("backend_url", ["memory", "sqlite"], indirect=True)
def test_purge_removes_the_waiting_jobs(jobs: JobsApp, client: TestClient) -> None:
    for n in range(4):
        jobs.dispatch(ok.on_queue("reports"), {"n": n})
    token = csrf(client.get("/queues").text)
    purged = client.post("/queues/purge", data={"csrf_token": token, "queue": "reports"})
    assert "Removed 4 waiting job(s)" in purged.text
    assert counts(jobs, "reports")["pending"] == 0


@pytest.mark.parametrize("backend_url", ["memory", "sqlite", "postgresql"], indirect=True)
def test_schedules_pause_resume_and_remove(jobs: JobsApp, client: TestClient) -> None:
    jobs.schedule_every(ok.on_queue("reports"), 3600, {"report": "<b>daily</b>"}, name="hourly-report")
    page = client.get("/schedules").text
    assert "hourly-report" in page and "&lt;b&gt;daily&lt;/b&gt;" in page
    token = csrf(page)

    paused = client.post(
        "/schedules/change", data={"csrf_token": token, "name": "hourly-report", "change": "pause"}
    )
    assert "Paused the schedule." in paused.text
    assert [s.paused for s in jobs.schedules()] == [True]
    resumed = client.post(
        "/schedules/change", data={"csrf_token": token, "name": "hourly-report", "change": "resume"}
    )
    assert "Resumed the schedule." in resumed.text
    assert [s.paused for s in jobs.schedules()] == [False]
    missing = client.post("/schedules/change", data={"csrf_token": token, "name": "nope", "change": "pause"})
    assert "There is no such schedule." in missing.text
    removed = client.post(
        "/schedules/change", data={"csrf_token": token, "name": "hourly-report", "change": "remove"}
    )
    assert "Removed the schedule." in removed.text
    assert jobs.schedules() == []


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_an_unknown_failed_job_is_a_clear_not_found(client: TestClient) -> None:
    response = client.get("/failed/job", params={"id": "no-such-id"})
    assert response.status_code == 404
    assert "no failed job with id &#39;no-such-id&#39;" in response.text
    assert "Traceback" not in response.text


def test_only_what_the_driver_supports_is_shown() -> None:
    # The example driver keeps no schedules and no completed count.
    jobs = JobsApp("example://", load_plugins=False)
    try:
        application = create_app(jobs, DashboardSettings(sample_interval=3600))
        with TestClient(application, base_url="http://localhost") as client:
            queues = client.get("/queues").text
            assert 'href="/schedules"' not in queues
            assert 'href="/failed"' in queues
            assert "Finished / min" not in queues
            assert "keeps no count of completed jobs" in queues
            assert client.get("/schedules").status_code == 404
            driver = client.get("/driver").text
            assert "Schedules: needs schedules" in driver
    finally:
        jobs.close()


@pytest.mark.parametrize("backend_url", ["postgresql"], indirect=True)
def test_no_secret_of_the_url_reaches_a_page(backend_url: str, fail_job: Callable[..., str]) -> None:
    # PostgreSQL's test server trusts local connections, so a password in the URL is accepted and unused.
    secret_url = backend_url.replace("postgres@", "postgres:Sup3rS3cretPw@", 1)
    assert secret_url != backend_url
    fail_job()
    jobs = JobsApp(secret_url, load_plugins=False)
    try:
        application = create_app(jobs, DashboardSettings(sample_interval=3600))
        with TestClient(application, base_url="http://localhost") as client:
            for path in ["/queues", "/failed", "/schedules", "/driver", "/failed/job?id=missing"]:
                html = client.get(path).text
                assert "Sup3rS3cretPw" not in html, path
                assert "postgres:***@" in html, path
    finally:
        jobs.close()


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_the_sampler_charts_throughput(jobs: JobsApp) -> None:
    application = create_app(jobs, DashboardSettings(sample_interval=3600))
    sampler = application.state.sampler
    with TestClient(application, base_url="http://localhost") as client:
        sampler.sample()
        for n in range(5):
            jobs.dispatch(ok.on_queue("reports"), {"n": n})
        assert jobs.work("reports", max_jobs=5) == 5
        sampler.sample()
        points = sampler.throughput("reports")
        assert points[-1].value is not None and points[-1].value > 0
        page = client.get("/queues/live").text
        assert "<polyline" in page
        assert "finished jobs" in page


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_mounted_under_a_path_of_another_application(jobs: JobsApp, fail_job: Callable[..., str]) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    job_id = fail_job()
    dashboard = create_app(
        jobs, DashboardSettings(token="correct-horse-battery-staple", sample_interval=3600)
    )
    site = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("the site")), Mount("/ops/jobs", app=dashboard)]
    )
    with TestClient(site, base_url="http://example.com") as client:
        assert client.get("/").text == "the site"
        first = client.get("/ops/jobs/failed", follow_redirects=False)
        assert first.headers["location"] == "/ops/jobs/login"
        login = client.get("/ops/jobs/login").text
        assert 'action="/ops/jobs/login"' in login and 'src="/ops/jobs/static/htmx.min.js"' in login
        page = client.post(
            "/ops/jobs/login", data={"csrf_token": csrf(login), "token": "correct-horse-battery-staple"}
        )
        assert str(page.url).endswith("/ops/jobs/queues")
        assert 'href="/ops/jobs/failed"' in page.text and 'hx-get="/ops/jobs/queues/live"' in page.text
        assert client.get("/ops/jobs/static/dashboard.css").status_code == 200
        retried = client.post("/ops/jobs/failed/retry", data={"csrf_token": csrf(page.text), "id": job_id})
        assert str(retried.url).endswith("/ops/jobs/failed?notice=retried&count=1")
        assert counts(jobs, "emails")["pending"] == 1


def test_a_backend_that_is_down_gives_a_page_that_says_so() -> None:
    jobs = JobsApp(
        "postgresql+psycopg://postgres:hunter2secret@127.0.0.1:1/jobs?connect_timeout=2", load_plugins=False
    )
    try:
        application = create_app(jobs, DashboardSettings(sample_interval=3600), sample=False)
        with TestClient(application, base_url="http://localhost") as client:
            for path in ["/queues", "/failed"]:
                response = client.get(path)
                assert response.status_code == 503, path
                assert "cannot reach the PostgreSQL database at 127.0.0.1:1" in response.text, path
                assert "hunter2secret" not in response.text and "Traceback" not in response.text, path
            assert client.get("/driver").status_code == 200  # what needs no backend still works
    finally:
        jobs.close()


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_a_bad_queue_name_is_a_clear_bad_request(client: TestClient) -> None:
    response = client.get("/failed", params={"queue": "<script>"})
    assert response.status_code == 400
    assert "invalid queue name &#39;&lt;script&gt;&#39;" in response.text


@pytest.mark.parametrize("backend_url", ["memory"], indirect=True)
def test_the_failed_store_is_paged_newest_first(jobs: JobsApp, client: TestClient) -> None:
    from jobs_dashboard_test_jobs import explode

    for n in range(57):
        jobs.dispatch(explode.on_queue("emails"), {"data": {"n": n}, "message": f"failure number {n}"})
    assert jobs.work("emails", max_jobs=57) == 57

    first = client.get("/failed").text
    assert first.count('<tr data-id="') == 50
    older = re.search(r'href="(/failed\?[^"]*offset=50[^"]*)">older', first)
    assert older and "← newer" not in first
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert second.count('<tr data-id="') == 7
    assert "older →" not in second and "← newer" in second
    shown = set(re.findall(r"failure number (\d+)<", first + second))
    assert shown == {str(n) for n in range(57)}
