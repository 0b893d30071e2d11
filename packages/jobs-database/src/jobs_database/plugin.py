"""The plugin module named by the ``jobs.drivers`` entry points of jobs-database."""

from __future__ import annotations

from collections.abc import Callable

from jobs_core import Driver, hookimpl

from jobs_database.driver import DatabaseDriver


@hookimpl
def jobs_register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register the ``database`` driver (schemes sqlite, postgresql, postgres, mysql, mariadb)."""
    register(DatabaseDriver)
