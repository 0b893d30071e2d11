"""The one-line status messages of the long-running commands (``jobs worker``, ``jobs scheduler``).

Printed to stderr as ``jobs worker[PID]: text``, or, with ``--log-format
json``, as one JSON object a line like the log records.
"""

from __future__ import annotations

import logging
import os

import click

from jobs_core.worker_health import JsonFormatter, use_log_format

__all__ = ["Say"]


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
