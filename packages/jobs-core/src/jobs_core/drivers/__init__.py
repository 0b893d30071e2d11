"""Drivers shipped with jobs-core, registered through the ``jobs.drivers`` entry point."""

from __future__ import annotations

from collections.abc import Callable

from jobs_core.driver import Driver
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.hookspecs import hookimpl

__all__ = ["MemoryDriver"]


@hookimpl
def jobs_register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register the ``memory`` driver."""
    register(MemoryDriver)
