"""The one-line status messages of the long-running commands (``jobs worker``, ``jobs scheduler``).

Printed to stderr as ``jobs worker[PID]: text``, or, with ``--log-format
json``, as one JSON object a line like the log records.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata

import click

from jobs_core.worker_health import JsonFormatter, use_log_format

__all__ = ["Say", "set_log_level"]

#: The entry point groups whose packages log under their own top-level names.
_LOGGING_GROUPS = ("jobs.drivers", "jobs.plugins")


def set_log_level(level: str) -> None:
    """Set ``level`` on ``jobs_core``'s logger and on those of every installed driver
    and plugin package (``jobs_kafka``, ``jobs_database``, ...), not on the root
    logger: the libraries below them (SQLAlchemy's SQL echo) keep their own levels.
    """
    names = {"jobs_core"}
    for group in _LOGGING_GROUPS:
        for entry_point in metadata.entry_points(group=group):
            names.add(entry_point.value.split(":", 1)[0].split(".", 1)[0])
    for name in sorted(names):
        logging.getLogger(name).setLevel(level.upper())


class Say:
    """Prints status lines for ``command`` (e.g. ``"jobs worker"``), as text or JSON log records."""

    def __init__(self, command: str, logger: str) -> None:
        self.command = command
        self.logger = logger
        self.json_lines = False

    def use_format(self, name: str) -> None:
        """Print lines (and log records) as ``"text"`` or ``"json"`` from now on."""
        self.json_lines = name == "json"
        use_log_format(name)

    def __call__(self, text: str) -> None:
        """Print ``text`` as one status line on stderr."""
        if self.json_lines:
            record = logging.LogRecord(self.logger, logging.INFO, __file__, 0, text, None, None)
            click.echo(JsonFormatter().format(record), err=True)
        else:
            click.echo(f"{self.command}[{os.getpid()}]: {text}", err=True)
