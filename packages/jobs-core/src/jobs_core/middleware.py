"""Middleware: hook wrappers around the ``jobs_run_job`` hook.

The worker provides the innermost implementation (:class:`ExecutionPlugin`),
which runs the job's ``handle``; middleware wraps it with
``@hookimpl(wrapper=True)`` and may change ``run.payload``, skip the job
(raise :class:`~jobs_core.errors.SkipJob`), retry it (raise
:class:`~jobs_core.errors.Retry`), time it, or alter its result.

Register middleware on an app with :meth:`JobsApp.register_plugin
<jobs_core.app.JobsApp.register_plugin>`, or ship it in a package whose
entry point in the group ``jobs.plugins`` names the plugin object.
:class:`LoggingMiddleware` is the example shipped with jobs.

When no middleware is registered, the worker skips the hook call and runs
the job directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

import pluggy

from jobs_core.errors import Retry, SkipJob
from jobs_core.executor import current_executor
from jobs_core.hookspecs import hookimpl
from jobs_core.run import JobRun

#: Name under which the worker's innermost implementation is registered.
EXECUTION_PLUGIN_NAME = "jobs-core:execution"


class ExecutionPlugin:
    """The innermost ``jobs_run_job``: runs the job with the current worker's executor."""

    @hookimpl(trylast=True)
    def jobs_run_job(self, run: JobRun) -> Any:
        """Run ``run.job.handle(run.payload)`` (sync, async or in a child process)."""
        return current_executor().execute(run)


def has_middleware(manager: pluggy.PluginManager) -> bool:
    """Whether any plugin besides the execution plugin implements ``jobs_run_job``."""
    return any(
        impl.plugin_name != EXECUTION_PLUGIN_NAME for impl in manager.hook.jobs_run_job.get_hookimpls()
    )


class LoggingMiddleware:
    """Logs each job run: start at DEBUG, success at INFO with its duration.

    A failed attempt is reported once, by the worker (a retry at INFO, a job
    failed for good at WARNING); this middleware adds only its duration, at
    DEBUG, so a failure is not logged twice.

    Example::

        app.register_plugin(LoggingMiddleware())

    ``logger`` defaults to ``jobs_core.middleware``.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("jobs_core.middleware")

    @hookimpl(wrapper=True)
    def jobs_run_job(self, run: JobRun) -> Generator[None, Any, Any]:
        """Log around the run of one job."""
        message = run.message
        self.log.debug("job %s %s attempt %d started", message.name, message.id, run.attempt)
        started = time.perf_counter()
        try:
            result = yield
        except SkipJob:
            self.log.info("job %s %s skipped", message.name, message.id)
            raise
        except Retry as exc:
            self.log.info("job %s %s asked to be retried: %s", message.name, message.id, exc)
            raise
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self.log.debug(
                "job %s %s attempt %d failed after %.3fs: %s: %s",
                message.name,
                message.id,
                run.attempt,
                elapsed,
                type(exc).__name__,
                exc,
            )
            raise
        elapsed = time.perf_counter() - started
        self.log.info("job %s %s done in %.3fs", message.name, message.id, elapsed)
        return result
