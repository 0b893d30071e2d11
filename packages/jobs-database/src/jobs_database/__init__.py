"""jobs-database: the ``database`` driver for jobs, on SQLite, PostgreSQL and MySQL/MariaDB.

Install it next to jobs-core and point jobs at a database URL::

    from jobs_core import ...
    Jobs.configure("sqlite:///jobs.db")            # or postgresql://..., mysql://...

The driver class is :class:`DatabaseDriver`; :func:`upgrade` creates or
upgrades the tables ahead of time (``jobs db upgrade`` does the same).
"""

from __future__ import annotations

from jobs_database.driver import DatabaseDriver
from jobs_database.schema import SCHEMA_VERSION
from jobs_database.settings import DatabaseSettings, validate_prefix

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "DatabaseDriver",
    "DatabaseSettings",
    "__version__",
    "upgrade",
    "validate_prefix",
]


def upgrade(url: str, **options: object) -> tuple[int, int]:
    """Create or upgrade the jobs tables at ``url``; return the versions ``(before, after)``."""
    with DatabaseDriver(url, create_schema=False, **options) as driver:
        assert isinstance(driver, DatabaseDriver)
        return driver.upgrade_schema()
