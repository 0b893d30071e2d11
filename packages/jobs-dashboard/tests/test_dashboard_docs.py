"""docs/guide/dashboard.md: its Python examples run, its shown output is the real one, its images exist."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs"
PAGE = DOCS / "guide" / "dashboard.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_python_examples_run(tmp_path: pathlib.Path) -> None:
    blocks = FENCE.findall(PAGE.read_text())
    assert blocks
    script = tmp_path / "dashboard_examples.py"
    script.write_text("\n\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_refusal_shown_is_the_real_one() -> None:
    shown = re.search(r"^\$ jobsctl dashboard (.*)\n(jobs: error: .*)$", PAGE.read_text(), re.MULTILINE)
    assert shown
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    result = subprocess.run(
        [sys.executable, "-m", "jobs_core", "dashboard", *shown.group(1).split()],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == shown.group(2)


def test_the_screenshots_exist_and_are_small() -> None:
    images = re.findall(r"\]\(\.\./images/([^)]+)\)", PAGE.read_text())
    assert len(images) >= 4
    for name in images:
        path = DOCS / "images" / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size < 200_000, name
