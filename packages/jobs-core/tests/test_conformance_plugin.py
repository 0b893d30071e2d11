"""The conformance plugin's configuration: where the driver URL comes from, and the report header."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _pytest(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "JOBS_DRIVER_URL"}
    environment.update(env or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "--pyargs",
            "jobs_core.testing.conformance.test_lifecycle",
            "-k",
            "close_twice",
            *args,
        ],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("source", ["option", "ini", "environment"])
def test_the_driver_url_comes_from_option_ini_or_environment(tmp_path: Path, source: str) -> None:
    args: list[str] = []
    env: dict[str, str] = {}
    if source == "option":
        args.append("--jobs-driver=memory://")
    elif source == "ini":
        (tmp_path / "pytest.ini").write_text("[pytest]\njobs_driver = memory://\n")
    else:
        env["JOBS_DRIVER_URL"] = "memory://"
    result = _pytest(tmp_path, *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "jobs driver: memory 0.1.0 (jobs-core) at memory://" in result.stdout
    assert "jobs capabilities: atomic_batch, blocking_reserve" in result.stdout


def test_without_a_driver_url_the_suite_skips_and_says_how_to_configure_it(tmp_path: Path) -> None:
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no jobs driver configured: pass --jobs-driver=URL or set JOBS_DRIVER_URL" in result.stdout


def test_an_unknown_driver_is_named_in_the_header_and_fails_the_tests(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "--jobs-driver=nosuch://user:secret@host")
    assert result.returncode == 1
    assert "cannot load" in result.stdout and "installed drivers" in result.stdout
    assert "secret" not in result.stdout + result.stderr
