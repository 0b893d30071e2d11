"""Sign-in, the Host check, the security headers, the settings and the ``jobs dashboard`` command."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from jobs_core import JobsApp
from jobs_core.cli import cli
from jobs_dashboard import DashboardSettingError, DashboardSettings, InsecureBind, create_app
from jobs_dashboard.settings import is_loopback
from starlette.testclient import TestClient

TOKEN = "correct-horse-battery-staple"


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("host", "local"),
    [
        *[("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True)],
        *[("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("dashboard.example.com", False)],
    ],
)
def test_loopback_addresses(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_any_other_address_needs_a_token_or_basic_auth() -> None:
    with pytest.raises(InsecureBind, match="beyond this machine, with no authentication"):
        DashboardSettings(host="0.0.0.0").check()
    DashboardSettings(host="0.0.0.0", token=TOKEN).check()
    DashboardSettings(host="0.0.0.0", basic_auth="ops:pa55word").check()
    DashboardSettings(host="127.0.0.1").check()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (DashboardSettings(token="short"), "at least 16 characters"),
        (DashboardSettings(basic_auth="nopassword"), "USER:PASSWORD"),
        (DashboardSettings(basic_auth=":pw"), "USER:PASSWORD"),
        (DashboardSettings(sample_interval=0), "sample interval"),
        (DashboardSettings(samples=1), "at least 2 samples"),
    ],
)
def test_bad_settings_are_named(settings: DashboardSettings, problem: str) -> None:
    with pytest.raises(DashboardSettingError, match=problem):
        settings.check()


def test_create_app_refuses_an_open_bind(jobs: JobsApp) -> None:
    with pytest.raises(InsecureBind):
        create_app(jobs, DashboardSettings(host="0.0.0.0"))


def test_the_command_refuses_to_start_open_to_the_network(tmp_path: object) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--url", "memory://", "--host", "0.0.0.0"], env={})
    assert result.exit_code == 2
    assert "no authentication" in result.output and "--token" in result.output
    short = CliRunner().invoke(cli, ["dashboard", "--url", "memory://", "--token", "abc"], env={})
    assert short.exit_code == 2 and "at least 16 characters" in short.output


def test_the_command_reports_a_backend_that_is_down_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobs_core", "dashboard", "--url", "postgresql://u:s3cretpw@127.0.0.1:1/jobs"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("JOBS_")},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("jobs: error: ") and "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr and "s3cretpw" not in result.stderr


def test_the_jobs_command_lists_the_plugin_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobs_core", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "dashboard" in result.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "jobs_core", "dashboard", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--token" in help_text and "JOBS_DASHBOARD_TOKEN" in help_text


def test_without_authentication_only_localhost_host_headers_are_answered(jobs: JobsApp) -> None:
    application = create_app(jobs, DashboardSettings(sample_interval=3600))
    with TestClient(application, base_url="http://attacker.example") as client:
        assert client.get("/queues").status_code == 403
    for base in ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"]:
        with TestClient(application, base_url=base) as client:
            assert client.get("/queues").status_code == 200, base


def test_token_sign_in(jobs: JobsApp, fail_job: Callable[..., str]) -> None:
    job_id = fail_job()
    application = create_app(jobs, DashboardSettings(host="0.0.0.0", token=TOKEN, sample_interval=3600))
    with TestClient(application, base_url="http://dashboard.example") as client:
        first = client.get("/failed", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/login"
        assert client.post("/failed/retry", data={"id": job_id}).status_code == 401
        refresh = client.get("/queues/live", headers={"HX-Request": "true"})
        assert refresh.status_code == 401 and refresh.headers["hx-redirect"] == "/login"
        assert client.get("/static/htmx.min.js").status_code == 200

        login = client.get("/login").text
        wrong = client.post("/login", data={"csrf_token": csrf(login), "token": "not-the-token-at-all"})
        assert "That is not the dashboard&#39;s token." in wrong.text
        assert client.get("/queues", follow_redirects=False).status_code == 303
        no_csrf = client.post("/login", data={"token": TOKEN})
        assert no_csrf.status_code == 403

        signed_in = client.post("/login", data={"csrf_token": csrf(login), "token": TOKEN})
        assert signed_in.status_code == 200 and "Queues" in signed_in.text
        page = client.get("/failed").text
        assert job_id in page
        retried = client.post("/failed/retry", data={"csrf_token": csrf(page), "id": job_id})
        assert "Retried 1 failed job(s)" in retried.text
        assert jobs.stats("emails")["pending"] == 1

        client.post("/logout", data={"csrf_token": csrf(retried.text)})
        assert client.get("/queues", follow_redirects=False).status_code == 303

    with TestClient(application, base_url="http://dashboard.example") as stranger:
        # A sign-in cookie copied to another session is worth nothing.
        stranger.cookies.set("jobs_dashboard_auth", "forged")
        assert stranger.get("/queues", follow_redirects=False).status_code == 303


def test_basic_auth(jobs: JobsApp) -> None:
    application = create_app(
        jobs, DashboardSettings(host="0.0.0.0", basic_auth="ops:pa55word", sample_interval=3600)
    )
    with TestClient(application, base_url="http://dashboard.example") as client:
        challenge = client.get("/queues")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"].startswith("Basic ")
        assert client.get("/queues", headers=basic("ops", "wrong")).status_code == 401
        assert client.get("/queues", headers=basic("root", "pa55word")).status_code == 401
        assert client.get("/queues", headers={"Authorization": "Basic !!!"}).status_code == 401
        assert client.get("/queues", headers=basic("ops", "pa55word")).status_code == 200


def test_security_headers(jobs: JobsApp) -> None:
    application = create_app(jobs, DashboardSettings(sample_interval=3600))
    with TestClient(application, base_url="http://localhost") as client:
        response = client.get("/queues")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert client.get("/static/htmx.min.js").headers["cache-control"] == "public, max-age=3600"
        cookie = response.headers["set-cookie"]
        assert "jobs_dashboard_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "<script>" not in response.text.replace('<script src="/static/', "")


def test_cookies_are_secure_over_https(jobs: JobsApp) -> None:
    application = create_app(jobs, DashboardSettings(host="0.0.0.0", token=TOKEN, sample_interval=3600))
    with TestClient(application, base_url="https://dashboard.example") as client:
        login = client.get("/login")
        assert "Secure" in login.headers["set-cookie"]
        signed_in = client.post(
            "/login", data={"csrf_token": csrf(login.text), "token": TOKEN}, follow_redirects=False
        )
        assert "jobs_dashboard_auth=" in signed_in.headers["set-cookie"]
        assert "Secure" in signed_in.headers["set-cookie"] and "HttpOnly" in signed_in.headers["set-cookie"]
    with TestClient(application, base_url="http://dashboard.example") as client:
        assert "Secure" not in client.get("/login").headers["set-cookie"]
