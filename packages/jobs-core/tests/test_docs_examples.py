"""Every example in the runtime docs runs.

Each page runs in a fresh directory and a fresh Python process (this file,
run as a script): ```python blocks whose first line is ``# file: PATH`` are
written to PATH; other ```python blocks run in order in one namespace;
```console blocks run each ``$ `` line as a shell command, which must exit 0
(the lines after it are sample output).
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs"
PAGES = [
    "quickstart.md",
    "guide/jobs.md",
    "guide/retries-and-timeouts.md",
    "guide/events-and-middleware.md",
    "guide/limits.md",
    "guide/workflows.md",
    "guide/flow-control.md",
    "reference/cli.md",
    "reference/facade.md",
]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: str) -> list[tuple[str, str]]:
    text = (DOCS / page).read_text()
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def run_console(block: str, cwd: pathlib.Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])
    env.pop("JOBS_URL", None)
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        command = line[2:].strip()
        words = shlex.split(command)
        assignments = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            key, _, value = words.pop(0).partition("=")
            assignments[key] = value
        if words and words[0] == "jobs":
            words = [sys.executable, "-m", "jobs_core", *words[1:]]
        elif words and words[0] == "python":
            words = [sys.executable, *words[1:]]
        result = subprocess.run(
            words,
            cwd=cwd,
            env={**env, **assignments},
            capture_output=True,
            text=True,
            timeout=120,
            input="y\n",
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"{command!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


def run_page(page: str) -> None:
    """Run the examples of ``page`` in the current directory."""
    cwd = pathlib.Path.cwd()
    sys.path.insert(0, str(cwd))
    found = blocks(page)
    if not found:
        raise SystemExit(f"{page} has no examples")
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('/', '_')[:-3]}"}
    for language, body in found:
        if language == "python":
            first = body.splitlines()[0] if body else ""
            if first.startswith("# file: "):
                target = cwd / first[len("# file: ") :].strip()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
                continue
            exec(compile(body, f"{page}:example", "exec"), namespace)
        elif language == "console":
            run_console(body, cwd)


if __name__ == "__main__":
    run_page(sys.argv[1])
else:
    import pytest

    @pytest.mark.parametrize("page", PAGES)
    def test_every_example_of_the_page_runs(page: str, tmp_path: pathlib.Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "JOBS_URL"}
        result = subprocess.run(
            [sys.executable, __file__, page],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{page}:\n{result.stdout}\n{result.stderr}"
