"""Finding and loading driver plugins.

Plugins are declared in the entry-point group ``jobs.drivers``. The entry
point's *name* is a URL scheme or driver name the plugin answers to (a plugin
may declare several entry points pointing at the same module); its *value* is
the module or object holding the hook implementations. Only the entry points
named after the scheme asked for are imported; the others load only when no
entry point matches or every driver is listed.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from jobs_core.distributions import (
    ENTRY_POINT_GROUP,
    distribution_name,
    distribution_version,
)
from jobs_core.driver import Driver
from jobs_core.errors import DriverLoadError, DriverNotFound
from jobs_core.hookspecs import PROJECT_NAME, DriverSpec
from jobs_core.urls import base_scheme

log = logging.getLogger("jobs_core.plugins")


def create_plugin_manager() -> pluggy.PluginManager:
    """A new plugin manager with the jobs hook specifications added."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(DriverSpec)
    return manager


@dataclass(frozen=True)
class DriverInfo:
    """A registered driver: its class and where it came from."""

    name: str
    schemes: tuple[str, ...]
    cls: type[Driver]
    distribution: str


class DriverRegistry:
    """The drivers known to one plugin manager, loaded on demand."""

    def __init__(self, manager: pluggy.PluginManager | None = None) -> None:
        self.manager = manager or create_plugin_manager()
        self._drivers: dict[str, DriverInfo] = {}
        self._loaded: set[str] = set()
        self._failures: dict[str, DriverLoadError] = {}
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------

    def register_class(self, cls: type[Driver], distribution: str = "") -> None:
        """Register one driver class directly (also what plugins' ``register`` does)."""
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise DriverLoadError(f"{cls!r} is not a subclass of jobs_core.Driver")
        if not cls.name:
            raise DriverLoadError(f"driver class {cls.__qualname__} has no name")
        with self._lock:
            existing = self._drivers.get(cls.name)
            if existing is not None and existing.cls is not cls:
                raise DriverLoadError(
                    f"driver name {cls.name!r} is registered by both "
                    f"{existing.cls.__module__}.{existing.cls.__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}"
                )
            dist = distribution or distribution_name(cls.__module__)
            self._drivers[cls.name] = DriverInfo(cls.name, tuple(cls.schemes), cls, dist)

    def register_plugin(self, plugin: Any, name: str | None = None, distribution: str = "") -> None:
        """Register a plugin object and collect the drivers it provides.

        ``distribution`` names the distribution that installed the plugin
        (found from the module when empty).
        """
        with self._lock:
            if self.manager.is_registered(plugin):
                return
            self.manager.register(plugin, name=name)
            register = functools.partial(self.register_class, distribution=distribution)
            for impl in self.manager.hook.jobs_register_drivers.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=register)

    # -- entry points -------------------------------------------------------

    @staticmethod
    def _entry_points() -> list[metadata.EntryPoint]:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def _load_entry_point(self, entry_point: metadata.EntryPoint) -> None:
        key = f"{entry_point.value}"
        with self._lock:
            if key in self._loaded:
                return
            if key in self._failures:
                raise self._failures[key]
            dist = entry_point.dist.name if entry_point.dist is not None else "unknown"
            try:
                plugin = entry_point.load()
            except Exception as exc:
                error = DriverLoadError(
                    f"the jobs driver plugin {entry_point.name!r} from distribution "
                    f"{dist!r} failed to import ({type(exc).__name__}: {exc}); "
                    f"reinstall it with: pip install --force-reinstall {dist}"
                )
                error.__cause__ = exc
                self._failures[key] = error
                raise error from exc
            try:
                self.register_plugin(plugin, name=f"{dist}:{key}", distribution=dist)
            except DriverLoadError:
                raise
            except Exception as exc:
                error = DriverLoadError(
                    f"the jobs driver plugin {entry_point.name!r} from distribution "
                    f"{dist!r} failed to register its drivers ({type(exc).__name__}: {exc})"
                )
                self._failures[key] = error
                raise error from exc
            self._loaded.add(key)

    def load_all(self) -> list[DriverLoadError]:
        """Load every installed plugin; return the errors of those that failed."""
        errors = []
        for entry_point in self._entry_points():
            try:
                self._load_entry_point(entry_point)
            except DriverLoadError as exc:
                errors.append(exc)
        return errors

    # -- lookup -------------------------------------------------------------

    def _find_loaded(self, key: str) -> DriverInfo | None:
        with self._lock:
            if key in self._drivers:
                return self._drivers[key]
            for info in self._drivers.values():
                if key in info.schemes:
                    return info
        return None

    def get(self, scheme_or_name: str) -> type[Driver]:
        """The driver class for a URL scheme (``postgresql+psycopg``) or a driver name.

        Imports only the plugins whose entry point is named after it; raises
        :class:`DriverNotFound` listing the installed drivers, or
        :class:`DriverLoadError` if the matching plugin is broken.
        """
        wanted = scheme_or_name.lower()
        keys = [wanted] if base_scheme(wanted) == wanted else [wanted, base_scheme(wanted)]
        for key in keys:
            found = self._find_loaded(key)
            if found:
                return found.cls
        for key in keys:
            for entry_point in self._entry_points():
                if entry_point.name.lower() == key:
                    self._load_entry_point(entry_point)
                    found = self._find_loaded(key)
                    if found:
                        return found.cls
        failures = self.load_all()
        for key in keys:
            found = self._find_loaded(key)
            if found:
                return found.cls
        installed = (
            ", ".join(
                f"{info.name} ({', '.join(s + '://' for s in info.schemes)})" for info in self.drivers()
            )
            or "none"
        )
        message = f"no jobs driver for {scheme_or_name!r}; installed drivers: {installed}"
        if failures:
            message += "; plugins that failed to load: " + "; ".join(str(f) for f in failures)
        raise DriverNotFound(message)

    def drivers(self) -> list[DriverInfo]:
        """The drivers registered so far, by name."""
        with self._lock:
            return sorted(self._drivers.values(), key=lambda info: info.name)


__all__ = [
    "ENTRY_POINT_GROUP",
    "DriverInfo",
    "DriverRegistry",
    "create_plugin_manager",
    "distribution_name",
    "distribution_version",
]
