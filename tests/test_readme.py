"""The README's Python examples run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CORE_README = ROOT / "packages" / "jobs-core" / "README.md"


def python_blocks(readme: pathlib.Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


def test_readme_has_a_first_example() -> None:
    assert python_blocks(), "README.md should show a Python example"


def test_readme_examples_run_as_written(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "readme_example.py"
    script.write_text("\n\n".join(python_blocks()))
    result = subprocess.run(
        [sys.executable, str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Welcome, Ada!" in result.stdout
    assert (tmp_path / "jobs.db").exists()


def test_jobs_core_readme_example_runs_as_written(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "core_readme_example.py"
    script.write_text("\n\n".join(python_blocks(CORE_README)))
    result = subprocess.run(
        [sys.executable, str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "sending to ada@example.com" in result.stdout


def test_the_install_from_a_checkout_names_installable_packages() -> None:
    blocks = re.findall(r"```text\n(.*?)```", README.read_text(), flags=re.S)
    paths = [
        word.strip('"').split("[", 1)[0]
        for block in blocks
        for line in block.splitlines()
        if line.startswith("pip install ./")
        for word in line.split("#", 1)[0].split("&&", 1)[0].split()[2:]
    ]
    assert {"./packages/jobs-core", "./packages/jobs-database", "./packages/jobs-kafka"} <= set(paths)
    for path in paths:
        assert (ROOT / path / "pyproject.toml").is_file(), f"README installs {path}, which is not a package"
