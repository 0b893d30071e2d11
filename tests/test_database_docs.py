"""The Python examples of docs/drivers/database.md run as written, on SQLite."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "drivers" / "database.md"


def test_database_driver_docs_examples_run(tmp_path: pathlib.Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(blocks))
    result = subprocess.run(
        [sys.executable, str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "shipping order 1" in result.stdout
    assert "shipping order 2" not in result.stdout


def test_the_demo_runs_a_worker_to_completion_with_progress(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobs_database.demo", "--jobs", "200"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "'completed': 202" in result.stdout
    assert "'failed': 1" in result.stdout
    assert "jobs worker[" in result.stderr and "processed" in result.stderr
    # The closing hint's commands work when typed into a shell (bash's `jobs` built-in
    # would catch a command named jobs).
    [hint] = [line for line in result.stdout.splitlines() if line.startswith("inspect it with: ")]
    commands = [part.strip() for part in hint[len("inspect it with: ") :].split("|")]
    assert [command.split()[:2] for command in commands] == [["jobsctl", "stats"], ["jobsctl", "failed"]]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ["PATH"]]),
    }
    for command in commands:
        typed = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert typed.returncode == 0, typed.stderr
        assert "QUEUE" in typed.stdout or "ID" in typed.stdout, typed.stdout
