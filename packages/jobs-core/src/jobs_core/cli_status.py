"""``jobs status ID``, ``jobs result ID`` and ``jobs cancel ID``: one job, by its id;
``jobs list`` (jobs by state) and ``jobs workers`` (workers seen recently).

Each takes ``--url`` (or ``$JOBS_URL``) and ``--json``. An unknown id is
reported in one line (``jobs: error: no job with id ...``) with exit status
1, never a traceback.
"""

from __future__ import annotations

import sys

import click

from jobs_core.cli_output import (
    emit_json,
    emit_listing,
    json_option,
    open_app,
    print_table,
    short_time,
    url_option,
)
from jobs_core.errors import JobCancelled, JobFailed
from jobs_core.status import CANCEL_FINISHED, CANCEL_REMOVED, FINISHED_STATES, RUNNING, STATES, JobStatus

#: Exit status of ``jobs result`` for a job that failed or was cancelled.
EXIT_JOB_FAILED = 1


def _describe(status: JobStatus) -> list[tuple[str, str]]:
    lines = [
        ("id", status.id),
        ("state", status.state),
        ("name", status.name or "?"),
        ("queue", status.queue),
    ]
    lines.append(("attempts", str(status.attempts)))
    if status.state == RUNNING:
        lines.append(("worker", status.worker or "?"))
        if status.lease_expires_at is not None:
            lines.append(("lease ends", short_time(status.lease_expires_at)))
    elif status.available_at is not None and not status.finished:
        lines.append(("due", short_time(status.available_at)))
    if status.progress is not None:
        lines.append(("progress", _progress_text(status)))
    if status.cancel_requested and not status.finished:
        lines.append(("cancel", "requested"))
    if status.finished_at is not None:
        lines.append(("finished", short_time(status.finished_at)))
    if status.state == "succeeded":
        lines.append(("result", _json_text(status.result)))
    if status.error:
        lines.append(("error", status.error.strip().splitlines()[-1]))
    return lines


def _progress_text(status: JobStatus) -> str:
    progress = status.progress
    if progress is None:
        return ""
    done = f"{progress.done:g}" + ("" if progress.total is None else f"/{progress.total:g}")
    if progress.fraction is not None:
        done += f" ({progress.fraction:.0%})"
    return f"{done} {progress.note}".rstrip()


def _json_text(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@click.command()
@url_option
@click.argument("job_id", metavar="ID")
@json_option
def status(url: str | None, job_id: str, as_json: bool) -> None:
    """Where job ID is: queued, delayed, running (worker, lease, progress), succeeded, failed, cancelled."""
    found = open_app(url, "status").status(job_id)
    if as_json:
        emit_json(found.to_dict())
        return
    for key, value in _describe(found):
        click.echo(f"{key + ':':<12}{value}")


@click.command()
@url_option
@click.argument("job_id", metavar="ID")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for the job to finish (0: do not wait).",
)
@json_option
def result(url: str | None, job_id: str, timeout: float, as_json: bool) -> None:
    """Print the return value of job ID (JSON); waits up to --timeout seconds for it to finish.

    Exit status 1 if the job failed or was cancelled (or is not finished in time).
    """
    app = open_app(url, "result")
    try:
        value = app.result(job_id, timeout=timeout)
    except (JobFailed, JobCancelled) as exc:
        if as_json:
            emit_json(app.status(job_id).to_dict())
        else:
            click.echo(f"jobs: {' '.join(str(exc).split())}", err=True)
        sys.exit(EXIT_JOB_FAILED)
    if as_json:
        emit_json({"id": job_id, "state": "succeeded", "result": value})
    else:
        click.echo(_json_text(value))


@click.command()
@url_option
@click.argument("job_id", metavar="ID")
@json_option
def cancel(url: str | None, job_id: str, as_json: bool) -> None:
    """Cancel job ID: a waiting job is removed; a running job's worker is asked to stop it."""
    outcome = open_app(url, "cancel").cancel(job_id)
    if as_json:
        emit_json({"id": job_id, "outcome": outcome})
        return
    if outcome == CANCEL_REMOVED:
        click.echo(f"cancelled job {job_id} (it was waiting)")
    elif outcome == CANCEL_FINISHED:
        click.echo(f"job {job_id} had already finished; nothing to cancel")
    else:
        click.echo(f"asked the worker of job {job_id} to stop it")


@click.command(name="list")
@url_option
@click.option(
    "--state",
    type=click.Choice([*STATES, FINISHED_STATES]),
    default=RUNNING,
    show_default=True,
    help="Jobs in this state ('finished': succeeded, failed and cancelled, newest first).",
)
@click.option("--queue", "-q", metavar="NAME", default=None, help="Only this queue.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
def list_jobs(  # noqa: PLR0917 (click passes the options by name; one per option)
    url: str | None, state: str, queue: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """Jobs in one state: running (worker, lease, progress), queued, delayed, or finished ones kept."""
    found = open_app(url, "list").jobs(state, queue, limit, offset)
    if emit_listing(found, as_json, f"no {state} jobs"):
        return
    rows = []
    for status in found:
        if status.state == RUNNING:
            when = short_time(status.lease_expires_at) if status.lease_expires_at else ""
            detail = f"{status.worker or '?'} {_progress_text(status)}".rstrip()
        elif status.finished:
            when = short_time(status.finished_at) if status.finished_at else ""
            detail = _finished_detail(status)
        else:
            when = short_time(status.available_at) if status.available_at else ""
            detail = ""
        rows.append([status.id, status.state, status.queue, status.name or "?", when, detail[:100]])
    print_table(["ID", "STATE", "QUEUE", "NAME", "WHEN", "DETAIL"], rows, wrap_last=True)


def _finished_detail(status: JobStatus) -> str:
    """The last line of a failed job's error, or a succeeded job's result as JSON."""
    if status.error:
        return status.error.strip().splitlines()[-1]
    return _json_text(status.result) if status.state == "succeeded" else ""


@click.command()
@url_option
@json_option
def workers(url: str | None, as_json: bool) -> None:
    """Workers seen recently: host, pid, queues, concurrency, started, last seen, jobs done and failed."""
    found = open_app(url, "workers").workers()
    if emit_listing(found, as_json, "no workers seen recently"):
        return
    rows = [
        [
            record.name,
            ",".join(record.queues),
            str(record.concurrency),
            short_time(record.started_at),
            short_time(record.last_seen),
            str(record.processed),
            str(record.failed),
            record.version,
        ]
        for record in found
    ]
    headers = ["WORKER", "QUEUES", "CONC", "STARTED", "LAST SEEN", "DONE", "FAILED", "VERSION"]
    print_table(headers, rows, numeric=(2, 5, 6))
