"""Plugin discovery through the ``jobs.drivers`` entry points: lazy, isolated, helpful when wrong."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_core import Driver
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import DriverLoadError, DriverNotFound
from jobs_core.plugins import DriverRegistry, distribution_name, distribution_version

GOOD = """
from jobs_core import hookimpl
from jobs_core.drivers.memory import MemoryDriver

IMPORTED = True

class LazyDriver(MemoryDriver):
    name = "lazyfake"
    schemes = ("lazyfake",)

@hookimpl
def jobs_register_drivers(register):
    register(LazyDriver)
"""

BROKEN = """
raise ImportError("libfake.so: cannot open shared object file")
"""


def _distribution(root: Path, name: str, module: str, source: str, entry: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[jobs.drivers]\n{entry} = {module}\n")
    (info / "top_level.txt").write_text(f"{module}\n")


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _distribution(tmp_path, "jobs-lazyfake", "lazyfake_plugin", GOOD, "lazyfake")
    _distribution(tmp_path, "jobs-brokenfake", "brokenfake_plugin", BROKEN, "brokenfake")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for module in ("lazyfake_plugin", "brokenfake_plugin"):
        sys.modules.pop(module, None)


def test_memory_is_found_through_its_entry_point() -> None:
    assert DriverRegistry().get("memory") is MemoryDriver
    assert DriverRegistry().get("MEMORY") is MemoryDriver


def test_only_the_plugin_for_the_scheme_asked_for_is_imported(fake_plugins: Path) -> None:
    registry = DriverRegistry()
    cls = registry.get("lazyfake")
    assert cls.name == "lazyfake"
    assert issubclass(cls, Driver)
    assert "lazyfake_plugin" in sys.modules
    assert "brokenfake_plugin" not in sys.modules


def test_a_plugin_that_fails_to_import_names_its_distribution_and_spares_the_others(
    fake_plugins: Path,
) -> None:
    registry = DriverRegistry()
    with pytest.raises(DriverLoadError) as caught:
        registry.get("brokenfake")
    message = str(caught.value)
    assert "jobs-brokenfake" in message
    assert "libfake.so" in message
    assert "pip install --force-reinstall jobs-brokenfake" in message
    assert isinstance(caught.value.__cause__, ImportError)
    with pytest.raises(DriverLoadError):
        registry.get("brokenfake")  # remembered, not retried
    assert registry.get("memory") is MemoryDriver
    assert registry.get("lazyfake").name == "lazyfake"


def test_an_unknown_scheme_lists_the_installed_drivers(fake_plugins: Path) -> None:
    with pytest.raises(DriverNotFound) as caught:
        DriverRegistry().get("nosuchdriver")
    message = str(caught.value)
    assert "'nosuchdriver'" in message
    assert "memory (memory://)" in message
    assert "lazyfake (lazyfake://)" in message
    assert "jobs-brokenfake" in message  # the broken plugin is mentioned, not hidden


def test_a_dialect_suffix_falls_back_to_the_base_scheme() -> None:
    assert DriverRegistry().get("memory+anything") is MemoryDriver


def test_register_class_refuses_non_drivers_and_name_clashes() -> None:
    registry = DriverRegistry()
    with pytest.raises(DriverLoadError, match="not a subclass"):
        registry.register_class(object)  # type: ignore[arg-type]

    class Nameless(MemoryDriver):
        name = ""

    with pytest.raises(DriverLoadError, match="has no name"):
        registry.register_class(Nameless)

    class Impostor(MemoryDriver):
        name = "memory"

    registry.register_class(MemoryDriver)
    registry.register_class(MemoryDriver)  # the same class twice is harmless
    with pytest.raises(DriverLoadError, match="registered by both"):
        registry.register_class(Impostor)


def test_distribution_of_a_module() -> None:
    assert distribution_name("jobs_core.drivers.memory") == "jobs-core"
    assert distribution_version("jobs_core.drivers.memory") != "unknown"
    assert distribution_name("no_such_top_level") == "unknown"
