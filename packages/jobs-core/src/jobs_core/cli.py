"""The ``jobs`` command line (also ``python -m jobs_core``).

Commands: ``worker``, ``scheduler``, ``schedules``, ``stats``, ``failed``,
``retry``, ``purge``, ``prune``, ``batches``, ``batch`` and ``drivers``. Each but ``drivers`` needs
``--url`` or ``$JOBS_URL`` (``memory://`` only when given); reporting
commands print tables for people and JSON with ``--json``. A user error
(bad URL, unknown driver or queue, no URL) prints one line to stderr and
exits with status 2; a backend error exits with status 1.

Over 400 lines: one click declaration per command, the worker's alone some
130 lines of options, with their help text; the worker's and the
scheduler's bodies live in :mod:`jobs_core.cli_worker` and
:mod:`jobs_core.cli_scheduler`, the output helpers in :mod:`jobs_core.cli_output`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import click

from jobs_core import __version__
from jobs_core.app import JobsApp
from jobs_core.cli_output import (
    emit_json,
    emit_listing,
    json_option,
    log_level_option,
    open_app,
    print_table,
    short_time,
    url_option,
)
from jobs_core.cli_scheduler import scheduler, schedules, worker_with_scheduler
from jobs_core.cli_status import cancel, list_jobs, result, status, workers
from jobs_core.cli_worker import WorkerOptions, run_worker, supervise
from jobs_core.cli_workflows import batch, batches
from jobs_core.driver import Capability
from jobs_core.errors import (
    ConfigurationError,
    DriverLoadError,
    JobsError,
    UnsupportedOperation,
)
from jobs_core.plugins import DriverRegistry, distribution_version

#: Exit status for usage and configuration errors.
EXIT_USAGE = 2
#: Exit status for backend errors.
EXIT_BACKEND = 1


def _fail(message: str, code: int) -> None:
    click.echo(f"jobs: error: {message}", err=True)
    sys.exit(code)


def _exit_code(error: JobsError) -> int:
    if isinstance(error, (ConfigurationError, DriverLoadError, UnsupportedOperation)):
        return EXIT_USAGE
    return EXIT_BACKEND


class JobsGroup(click.Group):
    """A click group that turns :class:`~jobs_core.errors.JobsError` into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report jobs errors without a traceback."""
        try:
            return super().invoke(ctx)
        except JobsError as exc:
            _fail(_one_line(str(exc)), _exit_code(exc))

    #: Entry-point group through which installed packages add commands
    #: (jobs-database adds ``jobs db``); an entry point's name is the command.
    plugin_group = "jobs.cli"

    def _plugin_commands(self) -> dict[str, metadata.EntryPoint]:
        found = metadata.entry_points(group=self.plugin_group)
        return {ep.name: ep for ep in found if ep.name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in commands plus those installed packages add."""
        return sorted({*super().list_commands(ctx), *self._plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else one from the ``jobs.cli`` entry points (imported on use)."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry_point = self._plugin_commands().get(cmd_name)
        if entry_point is None:
            return None
        dist = entry_point.dist.name if entry_point.dist is not None else "unknown"
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise click.ClickException(
                f"the command {cmd_name!r} from distribution {dist!r} failed to import "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return loaded if isinstance(loaded, click.Command) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_queue(app: JobsApp, queue: str) -> None:
    """Refuse a queue the driver has never seen (when it can list its queues)."""
    try:
        known = app.queue.queues()
    except UnsupportedOperation:
        return
    if queue not in known:
        listed = ", ".join(known) or "none"
        raise ConfigurationError(f"unknown queue {queue!r}; known queues: {listed}")


@click.group(cls=JobsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="jobs", message="%(prog)s %(version)s")
def cli() -> None:
    """Background jobs for Python: run workers and manage queues."""


# -- worker -----------------------------------------------------------------


@cli.command()
@url_option
@click.option("--queue", "-q", "queues", multiple=True, metavar="NAME", help="Queue to serve (repeatable).")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs run at the same time in each process: threads for sync jobs, an event loop for async ones.",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, supervised by this one (SIGTERM/SIGINT are passed on).",
)
@click.option(
    "--import",
    "-i",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Module whose jobs to register (repeatable): those it defines or imports, and its submodules'.",
)
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE[:OBJECT]",
    help=(
        "Middleware or listeners for this worker (repeatable): a plugin object, a class "
        "(instantiated), a module, or a function called with the worker's app."
    ),
)
@click.option("--max-jobs", type=click.IntRange(min=1), help="Stop after handling this many jobs.")
@click.option("--stop-when-empty", is_flag=True, help="Stop when no job is due.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish after SIGTERM/SIGINT.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds each reserved job is held, renewed every third of it while it runs.",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    help="Deliveries held beyond the running ones (default: 100 inline, else paced by the jobs).",
)
@click.option(
    "--ack-interval",
    type=click.FloatRange(min=0.001, max=60),
    default=0.05,
    show_default=True,
    help="Longest wait, in seconds, of a finished job for its acknowledgement.",
)
@click.option(
    "--queue-order",
    type=click.Choice(["round-robin", "weighted", "strict"]),
    help="Which queue each reserve starts with (default: round-robin, weighted with --weight).",
)
@click.option(
    "--rate-limit",
    "rate_limits",
    multiple=True,
    metavar="QUEUE=COUNT/SECONDS",
    help="Start at most COUNT jobs of QUEUE per SECONDS, across every worker (repeatable).",
)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    metavar="QUEUE=N",
    help="Weight of a queue for --queue-order weighted (repeatable; others weigh 1).",
)
@click.option(
    "--progress",
    "progress_interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines on stderr (0: none).",
)
@log_level_option()
@click.option("--with-scheduler", is_flag=True, help="Also fire the stored schedules (see `jobs scheduler`).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object a line (for log collectors).",
)
@click.option(
    "--max-memory",
    metavar="SIZE",
    help=(
        "Recycle a worker process whose resident memory passes SIZE (e.g. 512M, 2G): it takes no more "
        "jobs, finishes the running ones and exits with status 75; under --processes a new one starts."
    ),
)
@click.option(
    "--health-port",
    metavar="[HOST:]PORT",
    help="Answer HTTP probes: GET /ready (serving its queues) and GET /live (not stuck), 200 or 503.",
)
@click.option(
    "--health-file",
    metavar="PATH",
    help="Write the worker's health as JSON to PATH every second (removed when it stops).",
)
def worker(**params: Any) -> None:
    """Run a worker until SIGTERM/SIGINT (graceful), --max-jobs or --stop-when-empty."""
    options = WorkerOptions.from_params(params)
    if params["with_scheduler"]:
        sys.exit(worker_with_scheduler(options))
    if options.processes > 1:
        sys.exit(supervise(options))
    sys.exit(run_worker(options))


cli.add_command(scheduler)
cli.add_command(schedules)
cli.add_command(status)
cli.add_command(result)
cli.add_command(cancel)
cli.add_command(list_jobs)
cli.add_command(workers)
cli.add_command(batches)
cli.add_command(batch)


# -- reporting --------------------------------------------------------------


@cli.command()
@url_option
@click.option("--queue", "-q", "queues", multiple=True, metavar="NAME", help="Only these queues.")
@json_option
def stats(url: str | None, queues: Sequence[str], as_json: bool) -> None:
    """Counts per queue: pending, delayed, reserved, completed, failed (one snapshot)."""
    app = open_app(url, "stats")
    names = list(queues)
    for name in names:
        _check_queue(app, name)
    try:
        snapshot = app.queue.stats_by_queue(names or None)
    except UnsupportedOperation:
        snapshot = {}
    per_queue = {name: counts.to_dict() for name, counts in snapshot.items()}
    # The total is the sum of the rows shown, so the two always agree.
    total = _sum(per_queue.values()) if per_queue else app.stats()
    paused = _paused(app)
    if as_json:
        emit_json({"url": app.config.display_url, "queues": per_queue, "total": total, "paused": paused})
        return
    keys = ["pending", "delayed", "reserved", "completed", "failed"]
    rows = [
        [name + (" (paused)" if name in paused else ""), *(_count(counts[k]) for k in keys)]
        for name, counts in per_queue.items()
    ]
    rows.append(["(total)", *(_count(total[k]) for k in keys)])
    print_table(["QUEUE", *(k.upper() for k in keys)], rows, numeric=range(1, 6))
    shown = [name for name in paused if name not in per_queue]
    if shown:
        click.echo(f"paused (no jobs yet): {', '.join(shown)}")


def _paused(app: JobsApp) -> list[str]:
    """The paused queues, or none when the driver keeps no pause flags."""
    if not app.driver.supports(Capability.QUEUE_PAUSE):
        return []
    return app.paused_queues()


@cli.group()
def queue() -> None:
    """Pause and resume queues (every worker sees it within a second)."""


@queue.command("pause")
@url_option
@click.argument("name", metavar="NAME")
@json_option
def queue_pause(url: str | None, name: str, as_json: bool) -> None:
    """Stop starting jobs of queue NAME on every worker (running jobs finish)."""
    changed = open_app(url, "queue pause").pause_queue(name)
    if as_json:
        emit_json({"queue": name, "paused": True, "changed": changed})
    else:
        click.echo(f"queue {name!r} paused" if changed else f"queue {name!r} was already paused")


@queue.command("resume")
@url_option
@click.argument("name", metavar="NAME")
@json_option
def queue_resume(url: str | None, name: str, as_json: bool) -> None:
    """Start jobs of queue NAME again."""
    changed = open_app(url, "queue resume").resume_queue(name)
    if as_json:
        emit_json({"queue": name, "paused": False, "changed": changed})
    else:
        click.echo(f"queue {name!r} resumed" if changed else f"queue {name!r} was not paused")


@queue.command("list")
@url_option
@json_option
def queue_list(url: str | None, as_json: bool) -> None:
    """List the paused queues."""
    paused = open_app(url, "queue list").paused_queues()
    if as_json:
        emit_json({"paused": paused})
    else:
        click.echo("\n".join(paused) if paused else "no paused queues")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _sum(items: Any) -> dict[str, int | None]:
    total: dict[str, int | None] = {"pending": 0, "delayed": 0, "reserved": 0, "completed": 0, "failed": 0}
    for counts in items:
        for key, current in list(total.items()):
            value = counts.get(key)
            total[key] = None if value is None or current is None else current + value
    return total


@cli.command()
@url_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--queue", "-q", metavar="NAME", help="Only this queue.")
@json_option
def failed(url: str | None, limit: int, offset: int, queue: str | None, as_json: bool) -> None:
    """List failed jobs, newest first."""
    app = open_app(url, "failed")
    if queue is not None:
        _check_queue(app, queue)
    entries = app.failed_jobs(limit=limit, offset=offset, queue=queue)
    if emit_listing(entries, as_json, "no failed jobs"):
        return
    rows = [
        [e.id, e.name or "?", e.queue, str(e.attempts), short_time(e.failed_at), _first_line(e.error)]
        for e in entries
    ]
    print_table(["ID", "NAME", "QUEUE", "ATTEMPTS", "FAILED AT", "ERROR"], rows, numeric=[3], wrap_last=True)


# -- administration ---------------------------------------------------------


@cli.command()
@url_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed job.")
@click.option("--queue", "-q", metavar="NAME", help="With --all: only this queue.")
@json_option
def retry(url: str | None, ids: Sequence[str], retry_all: bool, queue: str | None, as_json: bool) -> None:
    """Put failed jobs back on their queues: by ID, or --all."""
    if bool(ids) == retry_all:
        raise click.UsageError("give failed job IDs or --all (not both)")
    app = open_app(url, "retry")
    if retry_all:
        if queue is not None:
            _check_queue(app, queue)
        started = time.monotonic()

        def progress(done: int) -> None:
            if not as_json:
                click.echo(f"jobs: retried {done} failed jobs ({time.monotonic() - started:.1f}s)", err=True)

        count = app.queue.retry_all(queue=queue, progress=progress)
        if as_json:
            emit_json({"retried": count, "missing": []})
        else:
            click.echo(f"retried {count} failed job{'s' if count != 1 else ''}")
        return
    missing = [ident for ident in ids if not app.retry(ident)]
    count = len(ids) - len(missing)
    if as_json:
        emit_json({"retried": count, "missing": missing})
    else:
        if count:
            click.echo(f"retried {count} failed job{'s' if count != 1 else ''}")
        for ident in missing:
            click.echo(f"jobs: error: no failed job with id {ident!r}", err=True)
    if missing:
        sys.exit(EXIT_BACKEND)


@cli.command()
@url_option
@click.argument("queue", metavar="QUEUE")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(url: str | None, queue: str, yes: bool, as_json: bool) -> None:
    """Remove the waiting (pending and delayed) jobs of QUEUE."""
    app = open_app(url, "purge")
    _check_queue(app, queue)
    if not yes:
        click.confirm(
            f"Remove every waiting job of queue {queue!r} on {app.config.display_url}?",
            abort=True,
            err=True,
        )
    count = app.purge(queue)
    if as_json:
        emit_json({"queue": queue, "purged": count})
    else:
        click.echo(f"purged {count} job{'s' if count != 1 else ''} from queue {queue!r}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"`` or ``"1w"``."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d or 1w")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


@cli.command()
@url_option
@click.option("--older-than", required=True, metavar="DURATION", help="e.g. 7d, 12h, 30m.")
@json_option
def prune(url: str | None, older_than: str, as_json: bool) -> None:
    """Remove completed and failed records older than DURATION."""
    seconds = parse_duration(older_than)
    app = open_app(url, "prune")
    count = app.prune(seconds)
    if as_json:
        emit_json({"pruned": count, "older_than": seconds})
    else:
        click.echo(f"pruned {count} record{'s' if count != 1 else ''} older than {older_than}")


@cli.command()
@json_option
def drivers(as_json: bool) -> None:
    """List installed drivers: schemes, distribution, version, capabilities."""
    registry = DriverRegistry()
    errors = registry.load_all()
    infos = registry.drivers()
    records: list[dict[str, Any]] = [
        {
            "name": info.name,
            "schemes": list(info.schemes),
            "distribution": info.distribution,
            "version": _version(info.distribution, info.cls.__module__),
            "capabilities": sorted(c.value for c in info.cls.capabilities if isinstance(c, Capability)),
        }
        for info in infos
    ]
    problems = [_one_line(str(error)) for error in errors]
    if as_json:
        emit_json({"drivers": records, "errors": problems})
        return
    rows: list[list[str]] = [
        [
            r["name"],
            ", ".join(f"{s}://" for s in r["schemes"]),
            r["distribution"],
            r["version"],
            ", ".join(r["capabilities"]),
        ]
        for r in records
    ]
    print_table(["DRIVER", "SCHEMES", "DISTRIBUTION", "VERSION", "CAPABILITIES"], rows, wrap_last=True)
    for problem in problems:
        click.echo(f"broken plugin: {problem}", err=True)


def _first_line(text: str, limit: int = 100) -> str:
    line = text.split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _version(distribution: str, module: str) -> str:
    try:
        return metadata.version(distribution)
    except (metadata.PackageNotFoundError, ValueError):
        return distribution_version(module)


def put_working_directory_on_path() -> None:
    """Let ``--import`` and ``--plugin`` find the modules of the directory the command runs in.

    ``python -m jobs_core`` has it on ``sys.path`` already; the ``jobs`` and
    ``jobsctl`` scripts have their own directory there instead, so the
    working directory is put first, as ``python -m`` does.
    """
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed
        return
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``jobs`` console script."""
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    put_working_directory_on_path()
    cli.main(args=list(argv) if argv is not None else None, prog_name="jobs")
