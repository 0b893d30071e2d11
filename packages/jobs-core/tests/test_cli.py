"""The ``jobs`` CLI: admin commands in-process, workers and signals as real subprocesses."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from jobs_core import Job, JobsApp
from jobs_core.cli import cli, parse_duration


class Boom(Job):
    max_retries = 0

    def handle(self, payload: Any) -> None:
        raise RuntimeError(f"boom {payload}")


class Fine(Job):
    def handle(self, payload: Any) -> None:
        return None


# -- in-process: admin and reporting commands on a shared memory store ----------


@pytest.fixture
def store() -> Iterator[tuple[str, JobsApp]]:
    url = f"memory://cli-{uuid.uuid4().hex}"
    with JobsApp(url) as app:
        yield url, app


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == "jobs 0.1.0"


def test_stats_as_a_table_and_as_json(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch_many(Fine, range(3))
    app.dispatch(Fine().on_queue("mail").delay(600), None)
    table = invoke("stats", "--url", url)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split() == ["QUEUE", "PENDING", "DELAYED", "RESERVED", "COMPLETED", "FAILED"]
    assert lines[1].split() == ["default", "3", "0", "0", "0", "0"]
    assert lines[2].split() == ["mail", "0", "1", "0", "0", "0"]
    assert lines[3].split() == ["(total)", "3", "1", "0", "0", "0"]
    data = json.loads(invoke("stats", "--url", url, "--json", "-q", "mail").output)
    assert data["queues"] == {
        "mail": {"pending": 0, "delayed": 1, "reserved": 0, "completed": 0, "failed": 0}
    }
    assert data["total"]["delayed"] == 1


def test_an_unknown_queue_is_one_line_and_status_2(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch(Fine, None)
    result = CliRunner().invoke(cli, ["stats", "--url", url, "-q", "nope"])
    assert result.exit_code == 2
    assert result.output.strip() == "jobs: error: unknown queue 'nope'; known queues: default"


def test_failed_lists_and_retry_puts_back(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch_many(Boom, [1, 2])
    app.work()
    table = invoke("failed", "--url", url)
    assert table.exit_code == 0
    assert table.output.splitlines()[0].split() == [
        "ID",
        "NAME",
        "QUEUE",
        "ATTEMPTS",
        "FAILED",
        "AT",
        "ERROR",
    ]
    assert "RuntimeError: boom 2" in table.output
    records = json.loads(invoke("failed", "--url", url, "--json").output)
    assert [r["payload"] for r in records] == [2, 1]
    assert set(records[0]) >= {"id", "name", "queue", "payload", "attempts", "error", "failed_at"}
    one = invoke("retry", "--url", url, records[0]["id"])
    assert one.exit_code == 0 and "retried 1 failed job" in one.output
    missing = CliRunner().invoke(cli, ["retry", "--url", url, "f" * 32])
    assert missing.exit_code == 1
    assert f"no failed job with id {'f' * 32!r}" in missing.output
    everything = invoke("retry", "--url", url, "--all", "--json")
    assert json.loads(everything.output) == {"retried": 1, "missing": []}
    assert app.stats() == {"pending": 2, "delayed": 0, "reserved": 0, "completed": 0, "failed": 0}


def test_retry_all_shows_progress(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch_many(Boom, range(3))
    app.work()
    result = CliRunner().invoke(cli, ["retry", "--url", url, "--all"])
    assert result.exit_code == 0
    assert "jobs: retried 3 failed jobs" in result.output
    assert "retried 3 failed jobs" in result.output.splitlines()[-1]


def test_retry_needs_ids_or_all() -> None:
    result = CliRunner().invoke(cli, ["retry", "--url", "memory://"])
    assert result.exit_code == 2
    assert "give failed job IDs or --all" in result.output


def test_purge_asks_for_confirmation_unless_yes(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch_many(Fine, range(4))
    declined = CliRunner().invoke(cli, ["purge", "--url", url, "default"], input="n\n")
    assert declined.exit_code == 1
    assert app.stats()["pending"] == 4
    accepted = invoke("purge", "--url", url, "default", input="y\n")
    assert "purged 4 jobs from queue 'default'" in accepted.output
    app.dispatch(Fine, None)
    assert json.loads(invoke("purge", "--url", url, "default", "--yes", "--json").output) == {
        "queue": "default",
        "purged": 1,
    }


def test_prune_takes_a_duration(store: tuple[str, JobsApp]) -> None:
    url, app = store
    app.dispatch_many(Fine, range(2))
    app.work()
    assert "pruned 0 records older than 7d" in invoke("prune", "--url", url, "--older-than", "7d").output
    assert json.loads(invoke("prune", "--url", url, "--older-than", "0s", "--json").output)["pruned"] == 2
    assert parse_duration("15m") == 900 and parse_duration("1.5h") == 5400 and parse_duration("30") == 30
    bad = CliRunner().invoke(cli, ["prune", "--url", url, "--older-than", "soon"])
    assert bad.exit_code == 2 and "is not a duration" in bad.output


def test_drivers_lists_memory_with_its_capabilities() -> None:
    data = json.loads(invoke("drivers", "--json").output)
    memory = next(d for d in data["drivers"] if d["name"] == "memory")
    assert memory["schemes"] == ["memory"]
    assert memory["distribution"] == "jobs-core"
    assert "failed_store" in memory["capabilities"]
    table = invoke("drivers").output
    assert table.splitlines()[0].split()[:3] == ["DRIVER", "SCHEMES", "DISTRIBUTION"]


# -- subprocesses -------------------------------------------------------------------

JOB_MODULE = """
import atexit, json, os, time
from jobs_core import Job, JobsApp

LOG = os.environ["JOBS_TEST_LOG"]


def note(line):
    with open(LOG, "a") as handle:
        handle.write(line + "\\n")


class Slow(Job):
    max_retries = 0

    def handle(self, payload):
        note(f"start {payload['n']}")
        time.sleep(payload["seconds"])
        note(f"done {payload['n']}")


class Spin(Job):
    # Computes (never waits) for seconds: a worker runs such jobs on its reserving thread.

    max_retries = 0

    def handle(self, payload):
        if payload["seconds"]:
            note(f"start {payload['n']}")
        end = time.monotonic() + payload["seconds"]
        while time.monotonic() < end:
            pass


_app = JobsApp(os.environ["JOBS_URL"])
_count = int(os.environ.get("JOBS_TEST_COUNT", "0"))
_app.dispatch_many(Slow, [{"n": n, "seconds": float(os.environ["JOBS_TEST_SECONDS"])} for n in range(_count)])
if os.environ.get("JOBS_TEST_SPIN"):
    _app.dispatch_many(Spin, [{"n": 1000 + n, "seconds": 0} for n in range(300)])
    _app.dispatch(Spin, {"n": 2000, "seconds": float(os.environ["JOBS_TEST_SPIN"])})
if os.environ.get("JOBS_TEST_BAD"):
    _app.driver.enqueue([Slow().to_message({"n": -1, "seconds": 0}).replace(name="nobody.Knows")])
    _app.driver.inject_raw("default", b"{not json")


def _report():
    driver = _app.driver
    left = driver.reserve(["default"], limit=1000, lease=60)
    report = {
        "stats": driver.stats().to_dict(),
        "left": [{"n": d.message.payload["n"], "attempts": d.message.attempts} for d in left],
        "failed": [f.error for f in driver.failed(limit=100)],
    }
    with open(os.environ["JOBS_TEST_REPORT"], "w") as handle:
        json.dump(report, handle)


atexit.register(_report)
"""


class WorkerProcess:
    def __init__(
        self, tmp: pathlib.Path, *args: str, count: int, seconds: float, bad: bool = False, spin: float = 0
    ) -> None:
        (tmp / "cli_test_jobs.py").write_text(textwrap.dedent(JOB_MODULE))
        self.log = tmp / "log.txt"
        self.report_path = tmp / "report.json"
        env = dict(os.environ)
        env.update(
            JOBS_URL=f"memory://cli-{uuid.uuid4().hex}",
            JOBS_TEST_LOG=str(self.log),
            JOBS_TEST_REPORT=str(self.report_path),
            JOBS_TEST_COUNT=str(count),
            JOBS_TEST_SECONDS=str(seconds),
            PYTHONPATH=os.pathsep.join([str(tmp), env.get("PYTHONPATH", "")]),
        )
        if bad:
            env["JOBS_TEST_BAD"] = "1"
        if spin:
            env["JOBS_TEST_SPIN"] = str(spin)
        command = [sys.executable, "-m", "jobs_core", "worker", "--import", "cli_test_jobs", *args]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def lines(self, word: str) -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.startswith(word)]

    def wait_for_starts(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines("start")) < count:
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "jobs did not start"
            time.sleep(0.02)

    def finish(self, timeout: float) -> tuple[int, str, float]:
        started = time.monotonic()
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err, time.monotonic() - started

    def report(self) -> dict[str, Any]:
        return dict(json.loads(self.report_path.read_text()))


def test_sigterm_lets_running_jobs_finish_and_exits_0(tmp_path: pathlib.Path) -> None:
    worker = WorkerProcess(tmp_path, "--concurrency", "3", "--grace", "20", count=3, seconds=1.0)
    worker.wait_for_starts(3)
    worker.process.send_signal(signal.SIGTERM)
    code, err, took = worker.finish(timeout=20)
    assert code == 0, err
    assert took < 20
    assert len(worker.lines("done")) == 3
    report = worker.report()
    assert report["stats"]["completed"] == 3
    assert report["left"] == [] and report["failed"] == []
    assert "stopped reserving" in err
    assert "processed 3" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_sigterm_gives_back_jobs_still_running_after_the_grace_period(
    tmp_path: pathlib.Path, concurrency: str
) -> None:
    worker = WorkerProcess(
        tmp_path, "--concurrency", concurrency, "--grace", "1", "--prefetch", "2", count=4, seconds=30
    )
    worker.wait_for_starts(int(concurrency))
    worker.process.send_signal(signal.SIGTERM)
    code, err, took = worker.finish(timeout=15)
    assert code == 0, err
    assert took < 10
    assert worker.lines("done") == []
    report = worker.report()
    assert report["stats"]["completed"] == 0 and report["stats"]["failed"] == 0
    assert sorted(item["n"] for item in report["left"]) == [0, 1, 2, 3]
    assert all(item["attempts"] == 0 for item in report["left"])


def test_a_second_signal_stops_at_once(tmp_path: pathlib.Path) -> None:
    worker = WorkerProcess(tmp_path, "--grace", "60", count=2, seconds=30)
    worker.wait_for_starts(1)
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    worker.process.send_signal(signal.SIGINT)
    code, err, took = worker.finish(timeout=15)
    assert code == 0, err
    assert took < 10
    report = worker.report()
    assert sorted(item["n"] for item in report["left"]) == [0, 1]
    assert all(item["attempts"] == 0 for item in report["left"])


@pytest.mark.parametrize("signals", [1, 2])
def test_a_long_computing_job_of_a_pooled_worker_is_given_back_at_the_grace_period_or_a_second_signal(
    tmp_path: pathlib.Path, signals: int
) -> None:
    # 300 jobs that only compute teach the worker to run them on its reserving thread;
    # the long one behind them must still be stopped like any other.
    worker = WorkerProcess(tmp_path, "--concurrency", "2", "--grace", "1", count=0, seconds=0, spin=60)
    worker.wait_for_starts(1)
    worker.process.send_signal(signal.SIGTERM)
    if signals == 2:
        time.sleep(0.2)
        worker.process.send_signal(signal.SIGINT)
    code, err, took = worker.finish(timeout=20)
    assert code == 0, err
    assert took < 10
    report = worker.report()
    assert [item["n"] for item in report["left"]] == [2000]
    assert report["left"][0]["attempts"] == 0
    assert report["stats"]["completed"] == 300


def test_the_worker_survives_unknown_and_undecodable_messages(tmp_path: pathlib.Path) -> None:
    worker = WorkerProcess(tmp_path, "--stop-when-empty", count=2, seconds=0, bad=True)
    code, err, _ = worker.finish(timeout=30)
    assert code == 0, err
    report = worker.report()
    assert report["stats"]["completed"] == 2
    assert report["stats"]["failed"] == 2
    assert any("job 'nobody.Knows' is not registered in this worker" in e for e in report["failed"])
    assert any("malformed" in e for e in report["failed"])


def test_max_jobs_and_progress_lines(tmp_path: pathlib.Path) -> None:
    worker = WorkerProcess(tmp_path, "--max-jobs", "3", "--progress", "0.2", count=5, seconds=0.2)
    code, err, _ = worker.finish(timeout=30)
    assert code == 0, err
    assert len(worker.lines("done")) == 3
    assert "jobs/s)" in err
    assert "processed 3, retried 0, failed 0" in err


def test_several_worker_processes_are_supervised(tmp_path: pathlib.Path) -> None:
    worker = WorkerProcess(tmp_path, "--processes", "2", "--grace", "20", count=1, seconds=1)
    worker.wait_for_starts(2)
    worker.process.send_signal(signal.SIGTERM)
    code, err, _ = worker.finish(timeout=30)
    assert code == 0, err
    assert "started 2 worker processes" in err
    assert len(worker.lines("done")) == 2


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs_core", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_user_errors_are_one_line_without_a_traceback() -> None:
    bad_url = run_cli("stats", "--url", "not-a-url")
    assert bad_url.returncode == 2
    assert bad_url.stderr.startswith("jobs: error: invalid connection URL 'not-a-url'")
    assert len(bad_url.stderr.strip().splitlines()) == 1
    unknown = run_cli("stats", env={"JOBS_URL": "nosuch://user:hunter2@host/db"})
    assert unknown.returncode == 2
    assert "no jobs driver for 'nosuch'" in unknown.stderr
    assert "hunter2" not in unknown.stderr
    no_jobs = run_cli("worker", "--url", "memory://", "--stop-when-empty")
    assert no_jobs.returncode == 2
    assert "no jobs are registered: pass --import MODULE" in no_jobs.stderr
    bad_import = run_cli("worker", "--url", "memory://", "--import", "no_such_module_xyz")
    assert bad_import.returncode == 2
    assert "cannot import job module 'no_such_module_xyz'" in bad_import.stderr
    for result in (bad_url, unknown, no_jobs, bad_import):
        assert "Traceback" not in result.stderr


def test_an_unreachable_backend_is_status_1_and_hides_the_password() -> None:
    result = run_cli("stats", "--url", "postgresql://user:hunter2@127.0.0.1:1/nothing")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("jobs: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr


# -- across processes on SQLite (jobs-database) -------------------------------------

SQLITE_JOBS = """
import os, time
from jobs_core import Job


class Nap(Job):
    job_name = "sqlite_cli.nap"
    max_retries = 0

    def handle(self, payload):
        with open(os.environ["JOBS_TEST_LOG"], "a") as handle:
            handle.write(f"start {payload['n']}\\n")
        time.sleep(payload["seconds"])
        with open(os.environ["JOBS_TEST_LOG"], "a") as handle:
            handle.write(f"done {payload['n']}\\n")
"""


WORKER = [sys.executable, "-m", "jobs_core", "worker"]


@pytest.mark.parametrize(("seconds", "finished"), [(0.5, 2), (30, 0)])
def test_sigterm_on_sqlite_loses_nothing_and_counts_no_attempt(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, seconds: float, finished: int
) -> None:
    pytest.importorskip("jobs_database")
    (tmp_path / "sqlite_cli_jobs.py").write_text(textwrap.dedent(SQLITE_JOBS))
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    log = tmp_path / "log.txt"
    with JobsApp(url) as app:
        app.register_module("sqlite_cli_jobs")
        app.dispatch_many("sqlite_cli.nap", [{"n": n, "seconds": seconds} for n in range(4)])
        env = {
            **os.environ,
            "JOBS_URL": url,
            "JOBS_TEST_LOG": str(log),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        }
        process = subprocess.Popen(
            [*WORKER, "--import", "sqlite_cli_jobs", "--concurrency", "2", "--prefetch", "2", "--grace", "3"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not log.exists() or log.read_text().count("start") < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert log.read_text().count("done") == finished
        stats = app.stats()
        assert stats == {
            "pending": 4 - finished,
            "delayed": 0,
            "reserved": 0,
            "completed": finished,
            "failed": 0,
        }
        left = app.driver.reserve(["default"], limit=10, lease=30)
        assert len(left) == 4 - finished
        assert all(d.message.attempts == 0 for d in left)


def test_drivers_reports_a_broken_plugin_instead_of_crashing(tmp_path: pathlib.Path) -> None:
    dist = tmp_path / "jobs_broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jobs-broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[jobs.drivers]\nbroken = jobs_no_such_module_xyz\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    table = run_cli("drivers", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[0] == "DRIVER"
    assert any(line.startswith("memory ") for line in table.stdout.splitlines())
    assert (
        "broken plugin: the jobs driver plugin 'broken' from distribution 'jobs-broken-plugin'"
        in table.stderr
    )
    data = json.loads(run_cli("drivers", "--json", env=env).stdout)
    assert any("jobs-broken-plugin" in error for error in data["errors"])
    assert "memory" in {d["name"] for d in data["drivers"]}


CHAIN_JOBS = """
from jobs_core import Job, Jobs


class Follow(Job):
    job_name = "chain.follow"

    def handle(self, payload):
        return payload


class Chain(Job):
    job_name = "chain.start"

    def handle(self, payload):
        Jobs.dispatch(Follow, {"after": payload})
"""


def test_jobs_dispatched_by_jobs_reach_the_workers_backend(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("jobs_database")
    (tmp_path / "chain_jobs.py").write_text(textwrap.dedent(CHAIN_JOBS))
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'chain.db'}"
    with JobsApp(url) as app:
        app.register_module("chain_jobs")
        app.dispatch("chain.start", 1)
        env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
        env["JOBS_URL"] = "memory://"
        result = run_cli("worker", "--url", url, "--import", "chain_jobs", "--stop-when-empty", env=env)
        assert result.returncode == 0, result.stderr
        assert "processed 2" in result.stderr
        assert app.stats()["completed"] == 2


def test_log_level_reaches_every_installed_driver_package_but_not_the_libraries_below() -> None:
    import logging
    from importlib import metadata

    from jobs_core.cli_say import set_log_level

    roots = {ep.value.split(".", 1)[0].split(":", 1)[0] for ep in metadata.entry_points(group="jobs.drivers")}
    assert roots, "no driver installed beside jobs-core"
    names = roots | {"jobs_core"}
    saved = {name: logging.getLogger(name).level for name in names}
    below = logging.getLogger("sqlalchemy.engine").level
    try:
        set_log_level("info")
        for name in names:
            assert logging.getLogger(name).level == logging.INFO, name
        assert logging.getLogger("sqlalchemy.engine").level == below  # no SQL echo
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
