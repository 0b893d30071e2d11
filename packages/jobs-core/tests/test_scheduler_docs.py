"""The examples of docs/guide/scheduling.md run, in order, as written.

A ``python`` block whose first line is ``# file: PATH`` is written to that
path (in a temporary directory on ``sys.path``); every other ``python`` block
runs in one namespace shared by the page, so later examples use what earlier
ones defined. Their printed output is checked where the page shows it.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "guide" / "scheduling.md"
BLOCK = re.compile(r"^(?P<indent> *)```python\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)


def blocks(text: str) -> list[str]:
    out = []
    for match in BLOCK.finditer(text):
        indent = len(match["indent"])
        out.append("".join(line[indent:] for line in match["body"].splitlines(keepends=True)))
    return out


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[module]


def test_the_scheduling_guide_runs(sandbox: Path) -> None:
    code = blocks(PAGE.read_text())
    assert len(code) >= 8, "the guide lost its examples"
    namespace: dict[str, object] = {"__name__": "scheduling_guide"}
    output = io.StringIO()
    for block in code:
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            target = sandbox / first.removeprefix("# file: ").strip()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block)
            continue
        with contextlib.redirect_stdout(output):
            exec(compile(block, str(PAGE), "exec"), namespace)
    printed = output.getvalue()
    assert "naive datetime 2030-01-01T09:00:00 has no time zone" in printed
    assert "['28 02:30 CET', '29 03:00 CEST', '30 02:30 CEST']" in printed
    assert "cron '0 18 * * mon-fri' America/New_York" in printed
    assert not namespace["thread"].is_alive()  # type: ignore[attr-defined]
