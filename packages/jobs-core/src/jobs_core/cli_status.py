"""``jobs status ID``, ``jobs result ID`` and ``jobs cancel ID``: one job, by its id.

Each takes ``--url`` (or ``$JOBS_URL``) and ``--json``. An unknown id is
reported in one line (``jobs: error: no job with id ...``) with exit status
1, never a traceback.
"""

from __future__ import annotations

import sys

import click

from jobs_core.cli_output import emit_json, json_option, open_app, short_time, url_option
from jobs_core.errors import JobCancelled, JobFailed
from jobs_core.status import CANCEL_FINISHED, CANCEL_REMOVED, RUNNING, JobStatus

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
        progress = status.progress
        done = f"{progress.done:g}" + ("" if progress.total is None else f"/{progress.total:g}")
        if progress.fraction is not None:
            done += f" ({progress.fraction:.0%})"
        lines.append(("progress", f"{done} {progress.note}".rstrip()))
    if status.cancel_requested and not status.finished:
        lines.append(("cancel", "requested"))
    if status.finished_at is not None:
        lines.append(("finished", short_time(status.finished_at)))
    if status.state == "succeeded":
        lines.append(("result", _json_text(status.result)))
    if status.error:
        lines.append(("error", status.error.strip().splitlines()[-1]))
    return lines


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
