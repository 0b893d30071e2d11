"""``jobs batches`` and ``jobs batch ID``: batches and their progress (``WORKFLOWS``)."""

from __future__ import annotations

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
from jobs_core.workflows import WorkflowStatus, listing, status

#: Width of the progress bar, in characters.
BAR_WIDTH = 24


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#########-------]  9/16`` for ``done`` of ``total``."""
    filled = width if total <= 0 else min(width, done * width // total)
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


@click.command()
@url_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
def batches(url: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List batches, newest first, with their progress."""
    app = open_app(url, "batches")
    found = listing(app, "batch", limit=limit, offset=offset)
    if emit_listing(found, as_json, "no batches"):
        return
    rows = [
        [s.id, s.status, progress_bar(s.done, s.total), str(s.failed), short_time(s.created_at)]
        for s in found
    ]
    print_table(["ID", "STATUS", "PROGRESS", "FAILED", "CREATED"], rows, numeric=[3])


@click.command()
@url_option
@click.argument("batch_id", metavar="ID")
@json_option
def batch(url: str | None, batch_id: str, as_json: bool) -> None:
    """Show one batch: counts, progress, failed job ids."""
    app = open_app(url, "batch")
    found = status(app, batch_id, "batch")
    if as_json:
        emit_json(found.to_dict())
        return
    _show(found)


def _show(s: WorkflowStatus) -> None:
    click.echo(f"batch {s.id}: {s.status}{' (finished)' if s.finished else ''}")
    click.echo(f"  {progress_bar(s.done, s.total)}")
    click.echo(
        f"  total {s.total}  pending {s.pending}  succeeded {s.succeeded}  failed {s.failed}"
        f"  cancelled {s.cancelled}"
    )
    click.echo(f"  created {short_time(s.created_at)}")
    if s.finished_at is not None:
        click.echo(f"  finished {short_time(s.finished_at)}")
    for failed_id in s.failed_ids:
        click.echo(f"  failed job {failed_id}")
