"""The conformance plugin's configuration: where the driver URL comes from, and the report header."""

from __future__ import annotations

import json
import os
import re
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


CLEANUP_CONFTEST = """\
import json
import pathlib


def pytest_jobs_cleanup(config, url, namespace):
    with pathlib.Path("cleaned.jsonl").open("a") as out:
        out.write(json.dumps([url, namespace]) + "\\n")
"""


def _cleaned(directory: Path) -> list[list[str]]:
    path = directory / "cleaned.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_namespace_fills_the_url_and_the_cleanup_hook_gets_it(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CLEANUP_CONFTEST)
    result = _pytest(tmp_path, "--jobs-driver=memory://{namespace}", "--jobs-namespace=acme_run_7")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _cleaned(tmp_path) == [["memory://acme_run_7", "acme_run_7"]]


def test_each_run_gets_a_new_namespace_and_a_failed_run_is_cleaned_up(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CLEANUP_CONFTEST)
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_fails(jobs_driver):\n    assert False, 'the run fails'\n")
    env = {"JOBS_DRIVER_URL": "memory://{namespace}"}
    first = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(failing)],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 1, first.stdout + first.stderr
    assert _pytest(tmp_path, env=env).returncode == 0
    (one_url, one), (two_url, two) = _cleaned(tmp_path)
    assert one != two
    for url, namespace in ((one_url, one), (two_url, two)):
        assert re.fullmatch(r"conformance_[0-9a-f]{10}", namespace)
        assert url == f"memory://{namespace}"


def test_a_namespace_that_fits_no_prefix_is_a_usage_error(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "--jobs-driver=memory://", "--jobs-namespace=has space")
    assert result.returncode == 4
    assert "jobs namespace 'has space'" in result.stderr
