"""The job registry: explicit registration, module import, duplicate names."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from jobs_core import Job, Registry, job
from jobs_core.errors import ConfigurationError, DuplicateJobName, JobNotRegistered


class Resize(Job):
    def handle(self, payload: object) -> None:
        return None


def test_register_by_class_instance_and_function() -> None:
    registry = Registry()

    @job(name="thumbs.make")
    def make(payload: object) -> None:
        return None

    assert registry.register(Resize) is Resize
    assert registry.register(Resize()) is Resize
    registry.register(make)
    assert registry.get(Resize.job_name) is Resize
    assert registry.get("thumbs.make") is make.job_class
    assert "thumbs.make" in registry
    assert registry.names() == sorted([Resize.job_name, "thumbs.make"])
    assert len(registry) == 2


def test_an_unregistered_name_raises_and_says_how_to_fix_it() -> None:
    with pytest.raises(JobNotRegistered, match="--import"):
        Registry().get("os.system")


def test_two_classes_under_one_name_are_refused() -> None:
    class One(Job):
        job_name = "same"

        def handle(self, payload: object) -> None:
            return None

    class Two(Job):
        job_name = "same"

        def handle(self, payload: object) -> None:
            return None

    registry = Registry()
    registry.register(One)
    with pytest.raises(DuplicateJobName, match="same"):
        registry.register(Two)


def test_registering_something_that_is_not_a_job_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Registry().register(print)  # type: ignore[arg-type]


def test_register_module_registers_the_jobs_it_defines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reg_jobs_mod.py").write_text(
        textwrap.dedent(
            """
            from jobs_core import Job, job
            from jobs_core.job import FunctionJob

            class Mine(Job):
                def handle(self, payload):
                    return payload

            class Abstract(Job):
                pass

            @job(name="mod.fn")
            def fn(payload):
                return payload

            Imported = FunctionJob
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    try:
        assert registry.register_module("reg_jobs_mod") == ["mod.fn", "reg_jobs_mod.Mine"]
    finally:
        sys.modules.pop("reg_jobs_mod", None)


def test_register_module_of_a_missing_module_names_it() -> None:
    with pytest.raises(ConfigurationError, match="no_such_jobs_module"):
        Registry().register_module("no_such_jobs_module")


def test_register_module_finds_the_jobs_a_package_reexports_from_its_submodules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "reg_pkg" / "jobs"
    package.mkdir(parents=True)
    (tmp_path / "reg_pkg" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "from reg_pkg.jobs.email import SendEmail\nfrom . import reports\n__all__ = ['SendEmail']\n"
    )
    (package / "email.py").write_text(
        textwrap.dedent(
            """
            from jobs_core import Job

            class SendEmail(Job):
                def handle(self, payload):
                    return payload
            """
        )
    )
    (package / "reports.py").write_text(
        textwrap.dedent(
            """
            from jobs_core import job

            @job(name="reports.build")
            def build(payload):
                return payload
            """
        )
    )
    (package / "unused.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    try:
        names = registry.register_module("reg_pkg.jobs")
        assert names == ["reg_pkg.jobs.email.SendEmail", "reports.build"]
        assert "reg_pkg.jobs.unused" not in sys.modules
        assert registry.get("reg_pkg.jobs.email.SendEmail").__name__ == "SendEmail"
    finally:
        for name in [n for n in sys.modules if n.startswith("reg_pkg")]:
            sys.modules.pop(name, None)


def test_register_module_does_not_walk_other_packages_it_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reg_other.py").write_text(
        "from jobs_core import job\n\n@job(name='other.job')\ndef other(payload):\n    return payload\n"
    )
    (tmp_path / "reg_user.py").write_text("import reg_other\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    try:
        assert registry.register_module("reg_user") == []
    finally:
        sys.modules.pop("reg_other", None)
        sys.modules.pop("reg_user", None)
