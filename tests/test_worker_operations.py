"""What a process manager relies on, with real worker processes on SQLite:
health probes (``--health-port``, ``--health-file``), memory recycling
(``--max-memory``) that loses no job, and JSON logs (``--log-format json``).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import JobsApp
from jobs_core.errors import ConfigurationError
from jobs_core.worker_health import HealthServer, WorkerHealth, parse_address, parse_size

JOBS = """
import logging, os, time
from jobs_core import job

LOG = os.environ.get("JOBS_TEST_LOG", "")
_leak = []


def note(line):
    with open(LOG, "a") as handle:
        handle.write(line + "\\n")


@job(name="ops.slow", max_retries=0)
def slow(payload):
    note(f"start {payload['n']} {os.getpid()}")
    time.sleep(payload["seconds"])
    note(f"done {payload['n']} {os.getpid()}")


@job(name="ops.leaky", max_retries=0)
def leaky(payload):
    # Keeps what it allocates, as a leaking library would; bytes are written, hence resident.
    _leak.append(b"x" * (payload["mib"] * 2**20))
    time.sleep(0.3)
    note(f"done {payload['n']} {os.getpid()}")


@job(name="ops.talk", max_retries=0)
def talk(payload):
    logging.getLogger("shop.orders").warning("order %s shipped", payload["n"])
"""


class Project:
    def __init__(self, tmp: pathlib.Path) -> None:
        (tmp / "ops_jobs.py").write_text(textwrap.dedent(JOBS))
        self.tmp = tmp
        self.url = f"sqlite:///{tmp / 'jobs.db'}"
        self.log = tmp / "log.txt"
        self.env = {**os.environ, "JOBS_TEST_LOG": str(self.log), "JOBS_URL": self.url}
        self.env.pop("JOBS_LOG_FORMAT", None)
        self.app = JobsApp(self.url)

    def dispatch(self, name: str, payloads: list[dict[str, Any]]) -> None:
        sys.path.insert(0, str(self.tmp))
        try:
            import ops_jobs  # noqa: F401  (registers the jobs)

            self.app.register_module("ops_jobs")
        finally:
            sys.path.remove(str(self.tmp))
        job_class = self.app.registry.get(name)
        self.app.dispatch_many(job_class, payloads)

    def start(self, *args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "jobs_core", "worker", "--import", "ops_jobs", *args]
        return subprocess.Popen(
            command, cwd=self.tmp, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def lines(self, word: str) -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.startswith(word)]

    def wait_for(self, word: str, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines(word)) < count:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"fewer than {count} {word!r} lines"
            time.sleep(0.05)


@pytest.fixture
def project(tmp_path: pathlib.Path) -> Iterator[Project]:
    sys.modules.pop("ops_jobs", None)
    project = Project(tmp_path)
    try:
        yield project
    finally:
        project.app.close()
        sys.modules.pop("ops_jobs", None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_probe(port: int, path: str, status: int, process: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        try:
            got, body = probe(port, path)
        except OSError:
            got, body = 0, {}
        if got == status:
            return body
        assert time.monotonic() < deadline, f"{path} never answered {status}: {got} {body}"
        time.sleep(0.1)


def test_health_port_is_ready_while_serving_and_live_while_it_stops(project: Project) -> None:
    project.dispatch("ops.slow", [{"n": 1, "seconds": 10}])  # still running when /ready turns 503
    port = free_port()
    worker = project.start("--health-port", f"127.0.0.1:{port}", "--grace", "30")
    body = wait_for_probe(port, "/ready", 200, worker)
    assert (
        body["ready"]
        and body["live"]
        and body["processes"] == [{"ready": True, "live": True, "reason": "serving"}]
    )
    assert probe(port, "/live")[0] == 200
    assert probe(port, "/nothing")[0] == 404
    project.wait_for("start", 1, worker)
    worker.send_signal(signal.SIGTERM)
    body = wait_for_probe(port, "/ready", 503, worker)
    assert body["reason"] == "stopping"
    # At once, not when the running job ends: the signal reaches the main thread even
    # while it sleeps in the job (the worker's other threads leave it to that thread).
    assert not project.lines("done"), "the worker turned unready only after its job ended"
    assert probe(port, "/live")[0] == 200  # stopping within the grace period is not being stuck
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert len(project.lines("done")) == 1
    with pytest.raises(OSError):
        probe(port, "/live")  # the port is closed with the worker


def test_health_port_answers_for_every_process_of_a_supervisor(project: Project) -> None:
    port = free_port()
    health_file = project.tmp / "health.json"
    worker = project.start(
        "--processes", "2", "--health-port", f"127.0.0.1:{port}", "--health-file", str(health_file)
    )
    body = wait_for_probe(port, "/ready", 200, worker)
    assert [p["ready"] for p in body["processes"]] == [True, True]
    deadline = time.monotonic() + 30
    while not (health_file.exists() and json.loads(health_file.read_text())["ready"]):
        assert time.monotonic() < deadline, "the supervisor's health file never said ready"
        time.sleep(0.1)
    assert json.loads(health_file.read_text())["pid"] == worker.pid
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert not health_file.exists()


def test_max_memory_recycles_a_leaking_worker_process_and_loses_no_job(project: Project) -> None:
    count = 12
    project.dispatch("ops.leaky", [{"n": n, "mib": 40} for n in range(count)])
    # Each job keeps 40 MiB; a process passes 150 MiB after two to four jobs (depending on what the
    # interpreter and SQLAlchemy take first), finishes its running job and is replaced.
    worker = project.start("--processes", "2", "--max-memory", "150M", "--stop-when-empty", "--progress", "0")
    _, err = worker.communicate(timeout=240)
    assert worker.returncode == 0, err
    done = project.lines("done")
    assert sorted(int(line.split()[1]) for line in done) == list(range(count))  # each once, none lost
    pids = {line.split()[2] for line in done}
    recycled = re.findall(r"worker process (\d+) recycled \(--max-memory\)", err)
    assert len(recycled) >= 2, err
    assert len(pids) >= 3  # the jobs ran on more processes than the two started first
    assert "over --max-memory 150.0 MiB" in err
    stats = project.app.stats()
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (0, 0, 0)


def test_a_single_worker_past_max_memory_exits_75_for_its_process_manager(project: Project) -> None:
    project.dispatch("ops.leaky", [{"n": n, "mib": 60} for n in range(6)])
    worker = project.start("--max-memory", "100M", "--progress", "0")
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 75, err
    assert "exiting with status 75 to be replaced (--max-memory)" in err
    done = len(project.lines("done"))
    assert 1 <= done < 6
    stats = project.app.stats()
    # What it had not started is back on the queue at once, with no attempt counted.
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (6 - done, 0, 0)


def test_json_log_format_makes_every_line_one_json_object(project: Project) -> None:
    project.dispatch("ops.talk", [{"n": 7}])
    worker = project.start("--log-format", "json", "--stop-when-empty", "--processes", "2")
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert {"time", "level", "logger", "pid", "message"} <= set(records[0])
    messages = [r["message"] for r in records]
    assert "order 7 shipped" in messages
    shipped = next(r for r in records if r["message"] == "order 7 shipped")
    assert shipped["logger"] == "shop.orders" and shipped["level"] == "WARNING"
    assert any(m.startswith("started 2 worker processes") for m in messages)
    assert sum(m.startswith("stopped after") for m in messages) == 2


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--max-memory", "lots"], "'lots' is not a memory size (expected e.g. 512M, 1.5G or 300MiB)"),
        (["--health-port", "web"], "--health-port 'web': expected PORT or HOST:PORT with PORT 0-65535"),
    ],
)
def test_bad_operations_options_are_one_line_and_status_2(
    project: Project, args: list[str], error: str
) -> None:
    for processes in ("1", "2"):
        worker = project.start(*args, "--processes", processes)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 2
        assert err.strip() == f"jobs: error: {error}"


def test_sizes_addresses_and_the_combined_answer() -> None:
    assert parse_size("512M") == parse_size("512Mi") == parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5G") == 3 * 2**29 and parse_size("4096") == 4096 and parse_size("2k") == 2048
    with pytest.raises(ConfigurationError, match="more than 0 bytes"):
        parse_size("0")
    assert parse_address("8080") == ("0.0.0.0", 8080)
    assert parse_address("127.0.0.1:9") == ("127.0.0.1", 9) and parse_address("[::1]:9") == ("::1", 9)
    answers = [WorkerHealth(True, True, "serving"), WorkerHealth(False, True, "starting")]
    server = HealthServer(("127.0.0.1", 0), lambda: answers)
    assert server.answer("/ready")[0] == 503 and server.answer("/live")[0] == 200
    assert server.answer("/readyz")[1]["reason"] == "starting"
    answers[1] = WorkerHealth(False, False, "no progress for 75s")
    assert server.answer("/livez")[0] == 503
    server.close()
    server.close()


def test_worker_health_follows_its_reserve_loop_and_its_heartbeat() -> None:
    import threading

    from jobs_core import job

    release, hang = threading.Event(), threading.Event()
    with JobsApp("memory://health-unit") as app:

        @job(name="ops.wait")
        def wait(payload: Any) -> None:
            release.wait(30)

        app.register(wait)

        worker = app.worker(install_signal_handlers=False, poll_interval=0.05)
        assert worker.health() == WorkerHealth(False, True, "not running")
        reserve = app.driver.reserve

        def stuck_reserve(*args: Any, **kwargs: Any) -> Any:
            hang.wait(30)  # a backend call that never returns, until the test lets it
            return reserve(*args, **kwargs)

        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not worker.health().ready:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            app.dispatch(wait, None)
            while worker.stats.in_flight == 0:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)
            # A long job: the loop waits in it, the heartbeat renews its lease: live.
            assert worker.health(window=0.2) == WorkerHealth(True, True, "serving")
            app.driver.reserve = stuck_reserve  # type: ignore[method-assign]
            release.set()
            while worker.stats.in_flight:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)
            health = worker.health(window=0.2)
            assert not health.live and not health.ready and health.reason.startswith("no progress for")
        finally:
            worker.stop()
            hang.set()
            thread.join(30)
        assert worker.health() == WorkerHealth(False, False, "not running")


def test_worker_processes_stop_by_themselves_when_their_supervisor_is_killed(project: Project) -> None:
    project.dispatch("ops.slow", [{"n": n, "seconds": 2} for n in range(6)])
    worker = project.start("--processes", "2", "--grace", "30", "--progress", "0")
    assert worker.stderr is not None
    first = worker.stderr.readline()
    pids = [int(pid) for pid in first.split(": ", 2)[2].split(", ")]
    project.wait_for("start", 2, worker)
    worker.kill()  # SIGKILL, OOM killer: nothing is passed on
    worker.communicate(timeout=60)
    deadline = time.monotonic() + 60
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
            assert time.monotonic() < deadline, f"worker process {pid} ran on without its supervisor"
            time.sleep(0.1)
    started = {line.split()[1] for line in project.lines("start")}
    assert started == {line.split()[1] for line in project.lines("done")}  # running jobs finished
    stats = project.app.stats()
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (6 - len(started), 0, 0)


def _state(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_the_scheduler_logs_json_too(project: Project) -> None:
    command = [sys.executable, "-m", "jobs_core", "scheduler", "--import", "ops_jobs", "--log-format", "json"]
    scheduler = subprocess.Popen(
        command, cwd=project.tmp, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert scheduler.stderr is not None
    first = json.loads(scheduler.stderr.readline())
    assert first["logger"] == "jobs_core.scheduler" and first["message"].startswith("firing 0 schedules")
    scheduler.send_signal(signal.SIGTERM)
    _, err = scheduler.communicate(timeout=60)
    assert scheduler.returncode == 0, err
    assert all(json.loads(line)["level"] for line in err.splitlines())


def test_sigterm_to_every_process_at_once_still_gives_running_jobs_their_grace(project: Project) -> None:
    # systemd's default KillMode=control-group signals every process of the unit: each worker
    # process gets SIGTERM directly and once more through its supervisor. That is one request.
    project.dispatch("ops.slow", [{"n": n, "seconds": 3} for n in range(6)])
    worker = project.start("--processes", "2", "--grace", "30", "--progress", "0")
    assert worker.stderr is not None
    first = worker.stderr.readline()
    pids = [int(pid) for pid in first.split(": ", 2)[2].split(", ")]
    project.wait_for("start", 2, worker)
    for pid in [worker.pid, *pids]:
        os.kill(pid, signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "stopping now" not in err
    started = {line.split()[1] for line in project.lines("start")}
    assert started == {line.split()[1] for line in project.lines("done")}  # finished, not given back
    stats = project.app.stats()
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (6 - len(started), 0, 0)
