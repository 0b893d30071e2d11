"""The migration guides' code on this project's side runs as written.

The Celery and RQ sides of the pages are fenced as ``py`` (shown, not run,
but parsed: each must be valid Python); this project's side is fenced as
``python`` and run in order by the docs runner of jobs-core, in a fresh
directory and process.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ROOT / "packages" / "jobs-core" / "tests" / "test_docs_examples.py"
PAGES = ["migrating/celery.md", "migrating/rq.md"]


@pytest.mark.parametrize("page", PAGES)
def test_our_side_of_the_migration_guide_runs(page: str, tmp_path: pathlib.Path) -> None:
    text = (ROOT / "docs" / page).read_text()
    fences = re.findall(r"^```(\w*)", text, re.MULTILINE)
    languages = set(fences[::2])  # opening fences
    assert languages == {"py", "python"}, languages
    assert fences.count("python") >= 3
    env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
    result = subprocess.run(
        [sys.executable, str(RUNNER), page],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("page", PAGES)
def test_the_other_sides_code_is_valid_python(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"^```py\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks
    for block in blocks:
        ast.parse(block)  # a SyntaxError names the line
