"""``jobs scheduler``, ``jobs schedules`` and ``jobs worker --with-scheduler``.

``jobs scheduler`` fires the stored schedules until SIGTERM or SIGINT; any
number may run against one backend, since each tick is claimed once.
``jobs schedules`` lists the schedules (``--json`` for scripts) and pauses,
resumes or removes one by name. :func:`worker_with_scheduler` runs a worker
with a scheduler beside it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import click

from jobs_core.app import JobsApp
from jobs_core.cli_output import (
    F,
    emit_json,
    emit_listing,
    json_option,
    log_level_option,
    open_app,
    print_table,
    short_time,
    url_option,
)
from jobs_core.cli_say import Say, set_log_level
from jobs_core.cli_worker import WorkerOptions, run_worker, supervise
from jobs_core.config import ENV_URL
from jobs_core.driver import Capability
from jobs_core.errors import UnsupportedOperation
from jobs_core.schedule_data import Schedule
from jobs_core.scheduler_runner import SchedulerThread, run_scheduler

#: Default seconds between looks at the store for schedules declared elsewhere.
DEFAULT_POLL_INTERVAL = 1.0


_say = Say("jobs scheduler", "jobs_core.scheduler")


def poll_interval_option(function: F) -> F:
    """``--poll-interval``: longest sleep between looks at the store."""
    return click.option(
        "--poll-interval",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_POLL_INTERVAL,
        show_default=True,
        help="Longest wait, in seconds, before looking for schedules declared elsewhere.",
    )(function)


def _app(url: str | None, command: str, load_plugins: bool = False) -> JobsApp:
    """An app for ``url`` whose driver keeps schedules.

    Raises :class:`~jobs_core.errors.ConfigurationError` when there is no
    ``url`` (``jobs COMMAND`` names ``--url`` and ``JOBS_URL``), and
    :class:`~jobs_core.errors.UnsupportedOperation` before connecting when
    the driver does not declare ``schedules``.
    """
    app = open_app(url, command, load_plugins=load_plugins)
    cls = app.config.driver_class(app.drivers)
    if Capability.SCHEDULES not in cls.capabilities:
        raise UnsupportedOperation(cls.name, Capability.SCHEDULES.value, "scheduling")
    return app


@click.command()
@url_option
@click.option(
    "--import",
    "-i",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Module whose jobs to register (repeatable); schedules fire without it.",
)
@poll_interval_option
@log_level_option()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object a line (for log collectors).",
)
def scheduler(
    url: str | None, imports: Sequence[str], poll_interval: float, log_level: str, log_format: str
) -> None:
    """Fire the stored schedules until SIGTERM/SIGINT (run as many as you like)."""
    _say.use_format(log_format)
    set_log_level(log_level)
    app = _app(url, "scheduler", load_plugins=True)
    try:
        for module in imports:
            app.register_module(module)
        app.driver.ping()
        count = len(app.schedules())
        started = time.monotonic()
        run_scheduler(
            app.scheduler,
            poll_interval=poll_interval,
            handle_signals=True,
            on_start=lambda: _say(
                f"firing {count} schedule{'s' if count != 1 else ''} on {app.config.display_url}"
            ),
        )
        _say(f"stopped after {time.monotonic() - started:.1f}s")
    finally:
        app.close()


@click.group(invoke_without_command=True)
@url_option
@json_option
@click.pass_context
def schedules(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """List the stored schedules, or pause, resume or remove one."""
    ctx.ensure_object(dict)
    ctx.obj["url"], ctx.obj["json"] = url, as_json
    if ctx.invoked_subcommand is None:
        _list(url, as_json)


def _settings(ctx: click.Context, url: str | None, as_json: bool) -> tuple[str | None, bool]:
    parent = ctx.obj or {}
    return url or parent.get("url"), as_json or bool(parent.get("json"))


@schedules.command("list")
@url_option
@json_option
@click.pass_context
def list_schedules(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """List the stored schedules (the default)."""
    _list(*_settings(ctx, url, as_json))


def _list(url: str | None, as_json: bool) -> None:
    app = _app(url, "schedules")
    try:
        found = app.schedules()
    finally:
        app.close()
    if emit_listing(found, as_json, "no schedules"):
        return
    print_table(
        ["NAME", "JOB", "WHEN", "QUEUE", "NEXT RUN", "LAST RUN", "MISSED", "STATE"],
        [_row(s) for s in found],
    )


def _row(schedule: Schedule) -> list[str]:
    return [
        schedule.name,
        schedule.job,
        schedule.description,
        schedule.queue,
        "-" if schedule.next_run_at is None else short_time(schedule.next_run_at),
        "-" if schedule.last_run_at is None else short_time(schedule.last_run_at),
        schedule.missed.value,
        "paused" if schedule.paused else "active",
    ]


def _change(ctx: click.Context, url: str | None, as_json: bool, name: str, action: str) -> None:
    url, as_json = _settings(ctx, url, as_json)
    app = _app(url, f"schedules {action}")
    try:
        if action == "pause":
            app.pause_schedule(name)
            done = True
        elif action == "resume":
            app.resume_schedule(name)
            done = True
        else:
            done = app.remove_schedule(name)
    finally:
        app.close()
    if as_json:
        emit_json({"name": name, "action": action, "done": done})
    elif done:
        click.echo(f"{action}d schedule {name!r}")
    if not done:
        click.echo(f"jobs: error: no schedule named {name!r}", err=True)
        sys.exit(1)


@schedules.command()
@click.argument("name")
@url_option
@json_option
@click.pass_context
def pause(ctx: click.Context, name: str, url: str | None, as_json: bool) -> None:
    """Stop firing schedule NAME until it is resumed."""
    _change(ctx, url, as_json, name, "pause")


@schedules.command()
@click.argument("name")
@url_option
@json_option
@click.pass_context
def resume(ctx: click.Context, name: str, url: str | None, as_json: bool) -> None:
    """Fire schedule NAME again from its next tick (missed ticks are not caught up)."""
    _change(ctx, url, as_json, name, "resume")


@schedules.command()
@click.argument("name")
@url_option
@json_option
@click.pass_context
def remove(ctx: click.Context, name: str, url: str | None, as_json: bool) -> None:
    """Delete schedule NAME."""
    _change(ctx, url, as_json, name, "remove")


def worker_with_scheduler(options: WorkerOptions, poll_interval: float = DEFAULT_POLL_INTERVAL) -> int:
    """``jobs worker --with-scheduler``: a worker with a scheduler thread beside it.

    With several worker processes the scheduler runs once, in the supervising
    process. Returns the worker's exit status.
    """
    if options.processes > 1:
        app = _app(options.url or os.environ.get(ENV_URL), "worker --with-scheduler", load_plugins=True)
        thread = SchedulerThread(app.scheduler, poll_interval)
        thread.start()
        try:
            return supervise(options)
        finally:
            thread.stop()
            app.close()
    app = _app(options.url or os.environ.get(ENV_URL), "worker --with-scheduler", load_plugins=True)
    scheduler = app.scheduler
    return run_worker(options, services=[lambda stop: scheduler.run(stop, poll_interval)], app=app)
