"""``python manage.py jobs_worker [OPTIONS]``: ``jobs worker`` for this Django project.

Every option of ``jobs worker`` is accepted (``--queue``, ``--concurrency``,
``--processes``, ``--import``, ``--max-jobs``, ...); ``--help`` lists them.
The backend is the one of the ``TASKS`` setting (``--backend ALIAS`` picks
one) unless ``--url`` or ``JOBS_URL`` names another; without ``--queue`` the
worker serves the backend's ``QUEUES``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    """Run a jobs worker for the tasks and jobs of this project."""

    help = "Run a jobs worker for the Django tasks and jobs of this project (options of 'jobs worker')."

    def add_arguments(self, parser: CommandParser) -> None:
        """Everything is passed on to ``jobs worker``."""
        parser.add_argument("worker_args", nargs="*", help="options of 'jobs worker'")

    def run_from_argv(self, argv: list[str]) -> None:
        """Pass the command line on to ``jobs worker`` (Django's ``--settings`` is already applied)."""
        sys.exit(run(_without_django_options(argv[2:])))

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command("jobs_worker", "--queue", "emails", ...)``."""
        code = run(list(options.get("worker_args") or args))
        if code:
            sys.exit(code)


def run(args: list[str]) -> int:
    """Run ``jobs worker`` with ``args`` and the Django plugin; return its exit status."""
    from jobs_core.cli import cli

    from jobs_django.worker import ENV_BACKEND, backend_queues

    args = list(args)
    if "--backend" in args:
        at = args.index("--backend")
        if at + 1 >= len(args):
            print("jobs_worker: --backend needs a TASKS alias", file=sys.stderr)
            return 2
        os.environ[ENV_BACKEND] = args[at + 1]
        del args[at : at + 2]
    if not any(a in ("--queue", "-q") or a.startswith("--queue=") for a in args) and "--help" not in args:
        for queue in backend_queues(os.environ.get(ENV_BACKEND)) or ["default"]:
            args += ["--queue", queue]
    command = ["worker", "--plugin", "jobs_django.worker:setup", *args]
    try:
        cli.main(args=command, prog_name="manage.py jobs_worker", standalone_mode=True)
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)


def _without_django_options(args: list[str]) -> list[str]:
    """``args`` without Django's ``--settings``/``--pythonpath`` (already applied by ``manage.py``)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--settings", "--pythonpath"):
            skip = True
            continue
        if arg.startswith(("--settings=", "--pythonpath=")):
            continue
        kept.append(arg)
    return kept
