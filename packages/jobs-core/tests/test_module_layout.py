"""jobs-core stays a small kernel: no module over ~400 lines without a stated reason, no import circle.

Both rules are read from the source with :mod:`ast`, so they hold for every
module whether or not a test imports it. An import counts when it runs at
import time: a statement at module level (also inside ``try`` or a plain
``if``), not one inside a function or an ``if TYPE_CHECKING:`` block.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import jobs_core

#: Lines a module may have without saying why it needs more.
MAX_LINES = 400
#: How a module over :data:`MAX_LINES` states its reason: a line of its docstring that starts so.
REASON_MARK = "Over 400 lines:"
#: A reason is a sentence, not a placeholder.
MIN_REASON_WORDS = 8

PACKAGE_DIR = Path(jobs_core.__file__).parent


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root`` (the directory of ``package``), by dotted name."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def stated_reason(source: str) -> str | None:
    """The reason in the module docstring: from a line that starts with :data:`REASON_MARK`
    to the end of its paragraph (``None`` if no line does)."""
    docstring = ast.get_docstring(ast.parse(source)) or ""
    for paragraph in docstring.split("\n\n"):
        lines = paragraph.split("\n")
        for at, line in enumerate(lines):
            if line.strip().startswith(REASON_MARK):
                text = " ".join(" ".join(lines[at:]).split())
                return text[len(REASON_MARK) :].strip()
    return None


def oversized_without_reason(modules: dict[str, Path]) -> list[str]:
    """Modules over :data:`MAX_LINES` lines whose docstring states no reason, with their size
    (test modules, those of the conformance suite, aside)."""
    found = []
    for name, path in modules.items():
        if path.name.startswith("test_"):  # the conformance suite's tests: not the kernel
            continue
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        reason = stated_reason(source)
        if lines > MAX_LINES and (reason is None or len(reason.split()) < MIN_REASON_WORDS):
            found.append(f"{name} ({lines} lines)")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of ``body`` run when the module is imported (not in functions, classes'
    methods or ``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time_statements(block)
        elif isinstance(node, ast.ClassDef):
            yield from _import_time_statements(node.body)
        else:
            yield node


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that module ``name`` imports at import time."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_time_statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif source in modules:
                    found.add(source)
    found.discard(name)
    return found


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The groups of modules that import each other at import time, directly or round a circle."""
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_jobs_core_module_is_over_400_lines_without_a_stated_reason() -> None:
    modules = module_files(PACKAGE_DIR, "jobs_core")
    assert len(modules) > 40
    assert oversized_without_reason(modules) == [], (
        f"state why in the module docstring, on a line starting {REASON_MARK!r}, or split the module"
    )


def test_jobs_core_modules_import_each_other_without_a_circle() -> None:
    modules = module_files(PACKAGE_DIR, "jobs_core")
    assert imports_of("jobs_core.app", modules["jobs_core.app"], modules) >= {
        "jobs_core.driver",
        "jobs_core.errors",
    }
    assert import_cycles(modules) == []


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "pkg"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return module_files(root, "pkg")


def test_the_cycle_check_finds_a_circle_through_any_import_form_and_ignores_type_checking(
    tmp_path: Path,
) -> None:
    modules = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import thing\n",
            "b.py": "try:\n    from . import c\nexcept ImportError:\n    pass\n",
            "c.py": "import pkg.a\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e import E\n",
            "e.py": "from pkg import d\n\ndef later():\n    from pkg import a\n",
        },
    )
    assert import_cycles(modules) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_size_check_wants_a_sentence_after_the_mark(tmp_path: Path) -> None:
    body = "x = 1\n" * MAX_LINES
    reason = "Over 400 lines: the parts share one lock\nand its state, so they stay together."
    modules = _package(
        tmp_path,
        {
            "__init__.py": "",
            "small.py": '"""Small."""\n' + "x = 1\n" * 10,
            "silent.py": '"""Big."""\n' + body,
            "empty.py": '"""Big.\n\nOver 400 lines: yes.\n"""\n' + body,
            "said.py": f'"""Big.\n\n{reason}\n"""\n' + body,
            "test_suite.py": '"""Tests are not the kernel."""\n' + body,
        },
    )
    assert oversized_without_reason(modules) == [
        f"pkg.empty ({MAX_LINES + 4} lines)",
        f"pkg.silent ({MAX_LINES + 1} lines)",
    ]
