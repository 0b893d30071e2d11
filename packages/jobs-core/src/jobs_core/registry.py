"""The registry of jobs a process knows, by stable name.

A worker runs only registered names; it never imports a module named inside a
message. Jobs are registered explicitly (``app.register(MyJob)``) or by
importing the modules the operator lists (``jobs worker --import myapp.jobs``),
which registers every :class:`~jobs_core.job.Job` subclass and decorated
function reachable from them: defined or re-exported there, or in the
submodules they import.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

from jobs_core.errors import ConfigurationError, DuplicateJobName, JobNotRegistered
from jobs_core.job import FunctionJob, Job, JobFunction


class Registry:
    """Maps job names to job classes. Thread-safe."""

    def __init__(self) -> None:
        self._jobs: dict[str, type[Job]] = {}
        self._lock = threading.Lock()

    def register(self, target: type[Job] | JobFunction | Job) -> type[Job]:
        """Register a Job class, decorated function or job instance; return its class.

        Registering the same class twice is harmless; a different class under
        a name already taken raises :class:`DuplicateJobName`.
        """
        cls = _job_class(target)
        name = cls.job_name
        if not name:
            raise ConfigurationError(f"job {cls.__qualname__} has no name")
        with self._lock:
            existing = self._jobs.get(name)
            if existing is not None and existing is not cls and not _same_definition(existing, cls):
                raise DuplicateJobName(
                    f"job name {name!r} is taken by {existing.__module__}.{existing.__qualname__}; "
                    f"give {cls.__module__}.{cls.__qualname__} another name"
                )
            self._jobs[name] = cls
        return cls

    def register_module(self, module: ModuleType | str) -> list[str]:
        """Import ``module`` (a module or dotted name) and register the jobs reachable from it.

        Those are the Job classes (with a ``handle``) and ``@job`` functions
        bound in the module, wherever they were defined, so jobs a package
        re-exports from its submodules count; and, recursively, those of the
        submodules the module has imported (``myapp.jobs.email`` once
        ``myapp/jobs/__init__.py`` imported it). Nothing is imported beyond
        ``module`` itself. Returns the names registered, sorted. Import errors
        are raised as :class:`ConfigurationError` naming the module.
        """
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(f"cannot import job module {module!r}: {exc}") from exc
        names: set[str] = set()
        for cls in reachable_jobs(module):
            self.register(cls)
            names.add(cls.job_name)
        return sorted(names)

    def get(self, name: str) -> type[Job]:
        """The job class registered as ``name``; :class:`JobNotRegistered` if none."""
        try:
            return self._jobs[name]
        except KeyError:
            raise JobNotRegistered(
                f"job {name!r} is not registered in this worker; register it or pass "
                "--import with the module that defines it"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def names(self) -> list[str]:
        """All registered names, sorted."""
        with self._lock:
            return sorted(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)


def reachable_jobs(module: ModuleType) -> list[type[Job]]:
    """The job classes bound in ``module`` and in the submodules it has imported (recursively).

    A Job subclass counts when it has a ``handle`` of its own (not an
    abstract base), wherever it was defined; an ``@job`` function counts
    through its job class. Submodules are the modules bound as attributes
    whose name starts with ``module.__name__ + "."``; other modules bound in
    it (``import os``, ``from otherapp import jobs``) are not walked.
    """
    found: dict[type[Job], None] = {}
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current.__name__ in seen:
            continue
        seen.add(current.__name__)
        for value in list(vars(current).values()):
            if isinstance(value, JobFunction):
                found.setdefault(value.job_class)
            elif (
                isinstance(value, type)
                and issubclass(value, Job)
                and value not in (Job, FunctionJob)
                and "handle" in _defined_methods(value)
            ):
                found.setdefault(value)
            elif isinstance(value, ModuleType) and value.__name__.startswith(current.__name__ + "."):
                pending.append(value)
    return list(found)


def _job_class(target: type[Job] | JobFunction | Job) -> type[Job]:
    if isinstance(target, JobFunction):
        return target.job_class
    if isinstance(target, Job):
        return type(target)
    if isinstance(target, type) and issubclass(target, Job):
        return target
    raise ConfigurationError(f"cannot register {target!r}: not a Job class or @job function")


def _defined_methods(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (Job, object):
            break
        names.update(klass.__dict__)
    return names


def _same_definition(a: type[Job], b: type[Job]) -> bool:
    """Whether two classes are the same definition loaded twice (module re-import)."""
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__
