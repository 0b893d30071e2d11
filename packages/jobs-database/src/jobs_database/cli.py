"""``jobs db``: manage the database driver's tables.

Installed as a ``jobs`` sub-command through the ``jobs.cli`` entry point, and
also runnable as ``python -m jobs_database`` or ``jobs-database``::

    jobs db upgrade --url postgresql://user@host/app
    jobs db version --url sqlite:///jobs.db
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from jobs_core.errors import ConfigurationError, JobsError

from jobs_database.driver import DatabaseDriver
from jobs_database.schema import SCHEMA_VERSION

_url = click.option(
    "--url",
    envvar="JOBS_URL",
    show_envvar=True,
    required=True,
    metavar="URL",
    help="Database URL, e.g. sqlite:///jobs.db or postgresql://user@host/db.",
)
_prefix = click.option("--table-prefix", default=None, help="Table prefix (default: jobs_, or the URL's).")


def _driver(url: str, table_prefix: str | None) -> DatabaseDriver:
    options: dict[str, object] = {"create_schema": False}
    if table_prefix is not None:
        options["table_prefix"] = table_prefix
    return DatabaseDriver(url, **options)


def _run(action: str, url: str, table_prefix: str | None) -> None:
    try:
        with _driver(url, table_prefix) as driver:
            assert isinstance(driver, DatabaseDriver)
            where = f"{driver.settings.display} (prefix {driver.settings.table_prefix!r})"
            if action == "upgrade":
                before, after = driver.upgrade_schema()
                if before == after:
                    click.echo(f"schema of {where} is up to date at version {after}")
                else:
                    click.echo(f"upgraded schema of {where} from version {before} to {after}")
            else:
                click.echo(f"schema of {where}: version {driver.schema_version()} (driver: {SCHEMA_VERSION})")
    except JobsError as exc:
        click.echo(f"jobs: error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2 if isinstance(exc, ConfigurationError) else 1)


@click.group(name="db")
def db() -> None:
    """Create, upgrade and inspect the database driver's tables."""


@db.command()
@_url
@_prefix
def upgrade(url: str, table_prefix: str | None) -> None:
    """Create the tables, or upgrade them in place to this version's schema."""
    _run("upgrade", url, table_prefix)


@db.command()
@_url
@_prefix
def version(url: str, table_prefix: str | None) -> None:
    """Print the schema version stored in the database."""
    _run("version", url, table_prefix)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m jobs_database`` and ``jobs-database``."""
    db.main(args=list(argv) if argv is not None else None, prog_name="jobs-database")
