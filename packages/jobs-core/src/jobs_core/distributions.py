"""Which installed distribution provides a module, and its version (for drivers and plugins)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from importlib import metadata

#: The entry-point group where driver plugins are declared.
ENTRY_POINT_GROUP = "jobs.drivers"


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    """``importlib.metadata.packages_distributions()``, computed once (it scans every distribution)."""
    return metadata.packages_distributions()


@functools.cache
def _distributions_of(top: str) -> tuple[str, ...]:
    """Names of the distributions that provide the top-level package ``top``.

    Editable installs often record no files, so the distributions whose
    ``jobs.drivers`` entry points point into ``top`` count too.
    """
    names = list(_packages_distributions().get(top, []))
    if not names:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.value.split(":", 1)[0].split(".", 1)[0] == top and entry_point.dist is not None:
                names.append(entry_point.dist.name)
    return tuple(names)


def distribution_version(module_name: str) -> str:
    """Version of the installed distribution that contains ``module_name``."""
    for dist in _distributions_of(module_name.split(".", 1)[0]):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - broken metadata
            continue
    return "unknown"


def distribution_name(module_name: str) -> str:
    """Name of the distribution that installed ``module_name`` (or ``"unknown"``)."""
    names: Iterable[str] = _distributions_of(module_name.split(".", 1)[0])
    return next(iter(names), "unknown")
