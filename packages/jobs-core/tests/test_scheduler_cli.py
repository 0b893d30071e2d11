"""``jobs schedules``, ``jobs scheduler`` and ``jobs worker --with-scheduler``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobs_core import JobsApp
from jobs_core.cli import cli


@pytest.fixture
def url() -> str:
    return f"memory://cli-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(url: str) -> Iterator[JobsApp]:
    with JobsApp(url, load_plugins=False) as app:
        yield app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_schedules_lists_a_table_and_json(app: JobsApp, url: str) -> None:
    app.schedule_daily("reports.daily", {"team": "ops"}, time="07:30", timezone="Europe/Berlin", name="daily")
    app.schedule_every("cleanup", 600, name="cleanup", missed="skip")
    code, out, _ = run("schedules", "--url", url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "JOB", "WHEN", "QUEUE", "NEXT", "RUN", "LAST", "RUN", "MISSED", "STATE"]
    assert rows[0].split()[:3] == ["cleanup", "cleanup", "every"]
    assert "daily at 07:30 Europe/Berlin" in rows[1] and rows[1].split()[-2:] == ["once", "active"]
    code, out, _ = run("schedules", "list", "--url", url, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [s["name"] for s in listed] == ["cleanup", "daily"]
    assert listed[1]["payload"] == {"team": "ops"} and listed[0]["missed"] == "skip"


def test_an_empty_store_says_so(url: str) -> None:
    assert run("schedules", "--url", url)[:2] == (0, "no schedules\n")
    assert run("schedules", "--url", url, "--json")[:2] == (0, "[]\n")


def test_pause_resume_and_remove_by_name(app: JobsApp, url: str) -> None:
    app.schedule_every("cleanup", 600, name="cleanup")
    assert run("schedules", "pause", "cleanup", "--url", url)[:2] == (0, "paused schedule 'cleanup'\n")
    assert [s.paused for s in app.schedules()] == [True]
    code, out, _ = run("schedules", "--url", url, "resume", "cleanup", "--json")
    assert (code, json.loads(out)) == (0, {"name": "cleanup", "action": "resume", "done": True})
    assert [s.paused for s in app.schedules()] == [False]
    assert run("schedules", "remove", "cleanup", "--url", url)[:2] == (0, "removed schedule 'cleanup'\n")
    assert app.schedules() == []


@pytest.mark.parametrize("action", ["pause", "resume", "remove"])
def test_an_unknown_name_is_an_error(url: str, action: str) -> None:
    code, _, err = run("schedules", action, "nope", "--url", url)
    assert code == 1
    assert err.strip() == "jobs: error: no schedule named 'nope'"


def test_a_bad_url_is_one_line_and_status_2() -> None:
    code, _, err = run("schedules", "--url", "nosuch://x")
    assert code == 2
    assert err.startswith("jobs: error:") and len(err.strip().splitlines()) == 1


JOBS_MODULE = """
import os
from jobs_core import job

@job(name="clijobs.tick", queue="ticks")
def tick(payload):
    with open(os.environ["TICK_LOG"], "a") as log:
        log.write(f"{payload['n']}\\n")
"""


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    pytest.importorskip("jobs_database", reason="the process tests need the jobs-database driver (SQLite)")
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def _start(tmp_path: Path, url: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "clijobs.py").write_text(JOBS_MODULE)
    env = {
        **os.environ,
        "JOBS_URL": url,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TICK_LOG": str(tmp_path / "ticks.log"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "jobs_core", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


def test_the_scheduler_command_fires_until_sigterm(tmp_path: Path, sqlite_url: str) -> None:
    with JobsApp(sqlite_url, load_plugins=False) as app:
        app.schedule_every("clijobs.tick", 0.5, {"n": 1}, queue="ticks", coalesce=False)
        started = time.time()
        process = _start(tmp_path, sqlite_url, "scheduler", "--poll-interval", "0.2")
        # Stop once it has fired a few ticks (a loaded machine may take seconds to start it).
        deadline = time.time() + 30
        while time.time() < deadline and (app.stats("ticks")["pending"] or 0) < 3:
            time.sleep(0.1)
        code, err = _stop(process)
        assert code == 0, err
        assert "firing 1 schedule on sqlite:///" in err
        assert "stopped after" in err
        fired = app.stats("ticks")["pending"]
        assert fired is not None and 3 <= fired <= (time.time() - started) / 0.5 + 2  # one job per tick


def test_worker_with_scheduler_fires_and_runs_the_jobs(tmp_path: Path, sqlite_url: str) -> None:
    with JobsApp(sqlite_url, load_plugins=False) as app:
        app.schedule_every("clijobs.tick", 0.5, {"n": 7}, queue="ticks")
        process = _start(
            tmp_path, sqlite_url, "worker", "-q", "ticks", "--import", "clijobs", "--with-scheduler"
        )
        log = tmp_path / "ticks.log"
        deadline = time.time() + 15
        while time.time() < deadline and not (log.exists() and len(log.read_text().split()) >= 3):
            time.sleep(0.1)
        code, err = _stop(process)
        assert code == 0, err
        assert log.exists(), err
        runs = log.read_text().split()
        assert len(runs) >= 3 and set(runs) == {"7"}


@pytest.mark.parametrize("command", [["scheduler"], ["schedules"], ["worker", "--with-scheduler"]])
def test_a_driver_without_schedules_is_refused(command: list[str]) -> None:
    pytest.importorskip("jobs_example_driver", reason="needs a driver without schedules (tests/fixtures)")
    code, _, err = run(*command, "--url", "example://")
    assert code == 2
    assert err.strip() == "jobs: error: driver 'example' does not support schedules: scheduling"


def test_worker_processes_with_scheduler_fire_and_run_the_jobs(tmp_path: Path, sqlite_url: str) -> None:
    with JobsApp(sqlite_url, load_plugins=False) as app:
        app.schedule_every("clijobs.tick", 0.5, {"n": 2}, queue="ticks")
        process = _start(
            tmp_path,
            sqlite_url,
            "worker",
            "--processes",
            "2",
            "-q",
            "ticks",
            "--import",
            "clijobs",
            "--with-scheduler",
        )
        log = tmp_path / "ticks.log"
        deadline = time.time() + 20
        while time.time() < deadline and not (log.exists() and len(log.read_text().split()) >= 4):
            time.sleep(0.1)
        code, err = _stop(process)
        assert code == 0, err
        assert "started 2 worker processes" in err, err
        # the jobs ran in the children (a slow child may be stopped before it served)
        assert err.count("serving ticks on") >= 1, err
        runs = log.read_text().split()
        assert len(runs) >= 4 and set(runs) == {"2"}


def test_a_paused_schedule_shows_no_next_run(app: JobsApp, url: str) -> None:
    app.schedule_every("cleanup", 1, name="cleanup")
    assert run("schedules", "pause", "cleanup", "--url", url)[0] == 0
    time.sleep(1.2)  # its stored next run is in the past by now
    code, out, _ = run("schedules", "--url", url)
    assert code == 0
    row = out.splitlines()[1].split()
    assert row[0] == "cleanup"
    assert row[-4:] == ["-", "-", "once", "paused"]  # NEXT RUN and LAST RUN are '-'
    [listed] = json.loads(run("schedules", "--url", url, "--json")[1])
    assert listed["paused"] is True and listed["next_run_at"] is None
    assert run("schedules", "--url", url, "resume", "cleanup")[0] == 0
    [listed] = json.loads(run("schedules", "--url", url, "--json")[1])
    assert listed["next_run_at"] > time.time()
