"""The Python examples of docs/guide/operating.md run, in order, in one fresh process."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

PAGE = pathlib.Path(__file__).resolve().parents[3] / "docs" / "guide" / "operating.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_operating_page_python_examples_run(tmp_path: pathlib.Path) -> None:
    blocks = FENCE.findall(PAGE.read_text())
    assert len(blocks) >= 3
    script = tmp_path / "operating_examples.py"
    script.write_text("\n\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "OTEL_"))}
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


def test_readme_setup_example_runs(tmp_path: pathlib.Path) -> None:
    (block,) = FENCE.findall((pathlib.Path(__file__).parents[1] / "README.md").read_text())
    script = tmp_path / "readme_example.py"
    script.write_text(block + "\n\nsetup(None)\nassert type(trace.get_tracer_provider()) is TracerProvider\n")
    result = subprocess.run(
        [sys.executable, str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
