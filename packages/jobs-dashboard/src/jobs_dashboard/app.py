"""The dashboard as an ASGI application: :func:`create_app` builds it over one :class:`~jobs_core.JobsApp`.

Example (serve it with any ASGI server; ``jobs dashboard`` uses uvicorn)::

    from jobs_core import JobsApp
    from jobs_dashboard import DashboardSettings, create_app

    asgi = create_app(JobsApp("sqlite:///jobs.db"), DashboardSettings(token="a-long-random-token"))
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from jinja2 import Environment, PackageLoader, select_autoescape
from jobs_core.app import JobsApp
from jobs_core.driver import Capability
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobs_dashboard.sampler import Sampler
from jobs_dashboard.security import Action, Guard, SecurityMiddleware, csrf_protected
from jobs_dashboard.settings import DashboardSettings
from jobs_dashboard.views import Views


def template_environment() -> Environment:
    """The Jinja2 environment of the pages: every value is HTML-escaped unless marked safe."""
    environment = Environment(
        loader=PackageLoader("jobs_dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment


def create_app(
    jobs: JobsApp,
    settings: DashboardSettings | None = None,
    *,
    sample: bool = True,
    guard: Guard | None = None,
) -> Starlette:
    """The dashboard over ``jobs`` (its driver, through the public contract).

    ``settings`` are checked first (:meth:`DashboardSettings.check`). With
    ``sample`` (the default), the queue counts are read every
    ``settings.sample_interval`` seconds, for the throughput chart, from the
    application's startup (or the first view of the queues page, where the
    server runs no lifespan, as for a mounted application) to its shutdown. The returned application has the
    :class:`~jobs_dashboard.views.Views` as ``state.views``, and the
    :class:`~jobs_dashboard.sampler.Sampler` as ``state.sampler``.
    """
    settings = settings or DashboardSettings()
    settings.check()
    guard = guard or Guard(settings)
    driver = jobs.driver
    sampler = Sampler(jobs.queue.stats_by_queue, interval=settings.sample_interval, keep=settings.samples)
    views = Views(jobs, settings, guard, sampler, template_environment(), sample=sample)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if sample and driver.supports(Capability.STATS):
            sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    def action(endpoint: Action) -> Callable[[Request], Awaitable[Response]]:
        return csrf_protected(guard, endpoint)

    routes = [
        Route("/", views.home),
        Route("/login", views.login_page, methods=["GET"]),
        Route("/login", action(views.login), methods=["POST"]),
        Route("/logout", action(views.logout), methods=["POST"]),
        Route("/queues", views.queues),
        Route("/queues/live", views.queues_live),
        Route("/queues/purge", action(views.purge), methods=["POST"]),
        Route("/queues/pause", action(views.pause_queue), methods=["POST"]),
        Route("/failed", views.failed),
        Route("/failed/job", views.failed_job),
        Route("/failed/retry", action(views.retry), methods=["POST"]),
        Route("/failed/retry-all", action(views.retry_all), methods=["POST"]),
        Route("/failed/delete", action(views.delete), methods=["POST"]),
        Route("/schedules", views.schedules),
        Route("/schedules/change", action(views.change_schedule), methods=["POST"]),
        Route("/batches", views.batches),
        Route("/batches/detail", views.batch_detail),
        Route("/batches/cancel", action(views.cancel_batch), methods=["POST"]),
        Route("/jobs", views.job_lookup),
        Route("/jobs/list", views.jobs_list),
        Route("/jobs/list/live", views.jobs_list_live),
        Route("/workers", views.workers),
        Route("/jobs/cancel", action(views.cancel_job), methods=["POST"]),
        Route("/driver", views.driver),
        Mount("/static", StaticFiles(packages=[("jobs_dashboard", "static")]), name="static"),
    ]
    application = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, guard=guard)],
        exception_handlers=views.exception_handlers(),
        lifespan=lifespan,
    )
    application.state.views = views
    application.state.sampler = sampler
    return application
