"""Commands that need a backend refuse to run without ``--url`` or ``JOBS_URL``.

An in-memory queue lives in one process: a worker serving one that nobody
asked for runs nothing and exits 0, and ``jobs stats`` on one reports an
empty queue. Each command names ``--url`` and ``JOBS_URL`` instead, exits
with the usage status, and serves ``memory://`` only when it is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobs_core.cli import EXIT_USAGE, cli

COMMANDS = [
    ["worker"],
    ["worker", "--stop-when-empty", "--import", "json"],
    ["worker", "--with-scheduler", "--stop-when-empty"],
    ["worker", "--with-scheduler", "--processes", "2"],
    ["stats"],
    ["failed"],
    ["retry", "--all"],
    ["purge", "default", "--yes"],
    ["prune", "--older-than", "7d"],
    ["scheduler"],
    ["schedules"],
    ["schedules", "pause", "nightly"],
]


@pytest.fixture
def no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_URL", raising=False)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
@pytest.mark.usefixtures("no_url")
def test_a_command_without_a_url_names_url_and_jobs_url(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.startswith(f"jobs: error: jobs {args[0]}")
    assert "needs a backend: pass --url URL or set JOBS_URL" in result.output
    assert "--url memory://" in result.output


@pytest.mark.usefixtures("no_url")
def test_an_empty_jobs_url_is_no_url() -> None:
    result = CliRunner().invoke(cli, ["stats"], env={"JOBS_URL": ""})
    assert result.exit_code == EXIT_USAGE
    assert "pass --url URL or set JOBS_URL" in result.output


@pytest.mark.usefixtures("no_url")
def test_memory_is_served_when_asked_for(tmp_path: Path) -> None:
    stats = CliRunner().invoke(cli, ["stats", "--url", "memory://", "--json"])
    assert stats.exit_code == 0, stats.output
    (tmp_path / "url_required_jobs.py").write_text(
        "from jobs_core import Jobs, job\n\n"
        "@job(name='url_required.noop')\n"
        "def noop(payload):\n"
        "    pass\n\n"
        "Jobs.dispatch(noop, {})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "jobs_core", "worker", "--import", "url_required_jobs"]
    command += ["--stop-when-empty", "--url", "memory://"]
    asked = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert asked.returncode == 0, asked.stderr
    assert "processed 1," in asked.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.usefixtures("no_url")
def test_the_jobs_script_exits_non_zero_without_a_url(tmp_path: Path, processes: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "jobs_core", "worker", "--stop-when-empty", "--processes", processes],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_USAGE
    assert "jobs worker needs a backend: pass --url URL or set JOBS_URL" in done.stderr
    assert "serving" not in done.stderr
