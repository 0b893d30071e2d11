"""``jobs dashboard``: serve the dashboard with uvicorn.

The ``jobs`` command finds this command through the entry-point group
``jobs.cli`` (see :class:`jobs_core.cli.JobsGroup`). Example::

    jobs dashboard --url sqlite:///jobs.db                      # http://127.0.0.1:8080, this machine only
    JOBS_DASHBOARD_TOKEN=... jobs dashboard --url postgresql://db/jobs --host 0.0.0.0
"""

from __future__ import annotations

import logging

import click
from jobs_core.cli_output import log_level_option, open_app, url_option

from jobs_dashboard.settings import ENV_BASIC_AUTH, ENV_TOKEN, DashboardSettings

log = logging.getLogger("jobs_dashboard")


@click.command()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    envvar=ENV_TOKEN,
    show_envvar=True,
    metavar="TOKEN",
    help="Token to sign in with (16+ characters); needed, or --basic-auth, for any address but localhost.",
)
@click.option(
    "--basic-auth",
    envvar=ENV_BASIC_AUTH,
    show_envvar=True,
    metavar="USER:PASSWORD",
    help="Ask for this user and password with the browser's own dialog.",
)
@click.option(
    "--sample-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between two reads of the queue counts (the throughput chart).",
)
@log_level_option(default="INFO")
def dashboard(
    *,
    url: str | None,
    host: str,
    port: int,
    token: str | None,
    basic_auth: str | None,
    sample_interval: float,
    log_level: str,
) -> None:
    """Serve the web dashboard: queues, throughput, failed jobs, schedules."""
    import uvicorn

    from jobs_dashboard.app import create_app

    settings = DashboardSettings(
        host=host,
        port=port,
        token=token or None,
        basic_auth=basic_auth or None,
        sample_interval=sample_interval,
    )
    settings.check()  # before connecting to anything
    jobs = open_app(url, "dashboard")
    try:
        jobs.driver.ping()
        application = create_app(jobs, settings)
        shown_host = f"[{host}]" if ":" in host else host
        auth = "token" if token else "basic auth" if basic_auth else "none (this machine only)"
        click.echo(
            f"jobs dashboard for {jobs.config.display_url} on http://{shown_host}:{port}/ (sign-in: {auth})",
            err=True,
        )
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level=log_level.lower(),
            access_log=log_level.upper() == "DEBUG",
            server_header=False,
        )
    finally:
        jobs.close()
