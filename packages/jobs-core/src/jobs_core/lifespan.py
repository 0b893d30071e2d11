"""Jobs in the lifespan of an ASGI application (FastAPI, Starlette, Quart, Litestar).

:func:`jobs_lifespan` is an async context manager for the lifespan hook an
ASGI framework offers. It imports no framework::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from jobs_core import JobsApp
    from jobs_core.lifespan import jobs_lifespan

    jobs = JobsApp("postgresql+psycopg://app@db/app")

    @asynccontextmanager
    async def lifespan(app):
        async with jobs_lifespan(jobs):
            yield

    api = FastAPI(lifespan=lifespan)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from jobs_core.app import JobsApp
from jobs_core.facade import set_default_app

log = logging.getLogger("jobs_core.lifespan")


@contextlib.asynccontextmanager
async def jobs_lifespan(
    app: JobsApp,
    *,
    upgrade: bool = False,
    worker: Sequence[str] | None = None,
    default: bool = True,
    **worker_options: Any,
) -> AsyncIterator[JobsApp]:
    """Run ``app`` for the lifespan of a web application; yield it.

    At startup: checks that the backend answers (:meth:`Driver.ping
    <jobs_core.driver.Driver.ping>`), so a wrong URL fails the start rather
    than the first request; with ``upgrade`` creates or upgrades the
    backend's schema first (drivers that have one; a deploy step, ``jobs db
    upgrade``, is the usual place); with ``default`` (the default) makes
    ``app`` the :class:`~jobs_core.facade.Jobs` facade's default app, so
    ``Jobs.adispatch(...)`` in a handler reaches it.

    With ``worker`` (a list of queue names) a worker serves those queues on
    a thread of this process for as long as the application runs, with
    ``worker_options`` as for :meth:`JobsApp.worker <jobs_core.app.JobsApp.worker>`
    (``concurrency``, ``grace``, ...): for development and small deployments;
    a separate ``jobs worker`` process is the production way. It stops with
    the application, gracefully (running jobs get ``grace`` seconds).

    At shutdown: stops that worker, restores the facade's previous default
    and closes ``app`` (its connections). Raises what the driver raises when
    the backend cannot be reached.
    """
    if upgrade:
        upgrade_schema = getattr(app.driver, "upgrade_schema", None)
        if callable(upgrade_schema):
            await asyncio.to_thread(upgrade_schema)
    await asyncio.to_thread(app.driver.ping)
    previous = set_default_app(app) if default else None
    runner: threading.Thread | None = None
    serving = None
    try:
        if worker is not None:
            serving = app.worker(list(worker), install_signal_handlers=False, **worker_options)
            runner = threading.Thread(target=serving.run, name="jobs-lifespan-worker", daemon=True)
            runner.start()
        yield app
    finally:
        if serving is not None and runner is not None:
            serving.stop()
            await asyncio.to_thread(runner.join)
        if default:
            set_default_app(previous)
        app.close()
