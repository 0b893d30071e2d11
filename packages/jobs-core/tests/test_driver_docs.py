"""docs/writing-a-driver.md stays true: its excerpts match the example driver, its examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "writing-a-driver.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXCERPT = "# tests/fixtures/jobs-example-driver/"


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(PAGE.read_text())]


def _excerpts() -> list[tuple[str, str]]:
    found = []
    for _, body in _blocks():
        first, _, rest = body.partition("\n")
        if first.startswith(EXCERPT):
            found.append((first[2:].split()[0], rest))
    return found


def test_the_page_quotes_the_example_driver() -> None:
    quoted = {path for path, _ in _excerpts()}
    assert "tests/fixtures/jobs-example-driver/pyproject.toml" in quoted
    assert "tests/fixtures/jobs-example-driver/src/jobs_example_driver/driver.py" in quoted


@pytest.mark.parametrize(("path", "body"), _excerpts(), ids=lambda v: str(v)[:40])
def test_every_excerpt_is_in_the_example_driver_verbatim(path: str, body: str) -> None:
    source = (ROOT / path).read_text()
    assert body.strip("\n") in source, f"the excerpt of {path} no longer matches the file"


def test_the_direct_use_example_runs() -> None:
    pytest.importorskip("jobs_example_driver", reason="install tests/fixtures/jobs-example-driver")
    (code,) = [body for lang, body in _blocks() if lang == "python" and "DriverRegistry" in body]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'n': 1}"


def test_the_drivers_command_lists_the_example_driver() -> None:
    pytest.importorskip("jobs_example_driver", reason="install tests/fixtures/jobs-example-driver")
    result = subprocess.run(
        [sys.executable, "-m", "jobs_core", "drivers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("example ")]
    assert "example://" in line and "jobs-example-driver" in line
