"""Helpers shared by the ``jobs`` CLI commands: the ``--url``/``--json`` options, tables, JSON, times.

Commands that installed packages add to ``jobs`` (the ``jobs.cli``
entry-point group) use them too: :func:`url_option` and :func:`open_app`
give a command the backend as the built-in commands take it, and
:func:`log_level_option` the same ``--log-level``. For example::

    @click.command()
    @url_option
    @log_level_option(default="INFO")
    def report(url: str | None, log_level: str) -> None:
        with open_app(url, "report") as app:
            click.echo(app.stats())

Tables use ``rich`` when it is installed and stdout is a terminal, and plain
aligned text otherwise (pipes, files, no ``rich``).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import click

from jobs_core.app import JobsApp
from jobs_core.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])


def url_option(function: F) -> F:
    """``--url`` (default ``$JOBS_URL``; required, see :func:`require_url`)."""
    return click.option(
        "--url",
        envvar="JOBS_URL",
        show_envvar=True,
        metavar="URL",
        help="Backend URL, e.g. sqlite:///jobs.db, postgresql://host/db or kafka://host:9092 (required).",
    )(function)


def missing_url(command: str) -> ConfigurationError:
    """The error of ``jobs COMMAND`` run with neither ``--url`` nor ``JOBS_URL``.

    Another process never sees an in-memory queue, so a command does not fall
    back to one: ``memory://`` is used only when asked for.
    """
    return ConfigurationError(
        f"jobs {command} needs a backend: pass --url URL or set JOBS_URL "
        "(e.g. sqlite:///jobs.db, postgresql://host/db, kafka://host:9092; "
        "--url memory:// for a queue that lives only in this process)"
    )


def require_url(url: str | None, command: str) -> str:
    """``url`` (from ``--url`` or ``JOBS_URL``); raises :func:`missing_url` when there is none."""
    if not url:
        raise missing_url(command)
    return url


def open_app(url: str | None, command: str, *, load_plugins: bool = False) -> JobsApp:
    """The app of ``jobs COMMAND``: for ``url`` (from :func:`url_option`), without the
    ``jobs.plugins`` entry points unless ``load_plugins``.

    With no URL, raises the :class:`~jobs_core.errors.ConfigurationError` of
    :func:`missing_url`, which the ``jobs`` command prints as one line.
    """
    return JobsApp(require_url(url, command), load_plugins=load_plugins)


def log_level_option(default: str = "WARNING") -> Callable[[F], F]:
    """``--log-level DEBUG|INFO|WARNING|ERROR`` (any case), ``default`` unless given."""

    def decorate(function: F) -> F:
        return click.option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default=default,
            show_default=True,
            help="Least severe log records to show.",
        )(function)

    return decorate


def json_option(function: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(function)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


class Listed(Protocol):
    """What a listing command prints: anything with a ``to_dict()`` for ``--json``."""

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON-ready data."""
        ...


def emit_listing(found: Sequence[Listed], as_json: bool, nothing: str) -> bool:
    """Print ``found`` as a JSON list (``--json``), or ``nothing`` when it is empty.

    Returns ``True`` when that was all there was to print; ``False`` leaves the
    table to the caller.
    """
    if as_json:
        emit_json([item.to_dict() for item in found])
        return True
    if not found:
        click.echo(nothing)
        return True
    return False


def short_time(timestamp: float) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Iterable[int] = (),
    wrap_last: bool = False,
) -> None:
    """Print a table: ``numeric`` columns are right-aligned; with ``wrap_last``
    the last column is not padded (long text runs on).
    """
    right = set(numeric)
    if sys.stdout.isatty() and _print_rich(headers, rows, right):
        return
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        parts = []
        for index, cell in enumerate(row):
            last = index == len(row) - 1
            if index in right:
                parts.append(cell.rjust(widths[index]))
            elif last:
                parts.append(cell)
            else:
                parts.append(cell.ljust(widths[index]))
        click.echo("  ".join(parts).rstrip())


def _print_rich(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> bool:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    table = Table(show_edge=False, box=None, header_style="bold")
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in right else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return True
