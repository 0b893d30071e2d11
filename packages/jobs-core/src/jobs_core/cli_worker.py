"""``jobs worker``: one worker process, or a supervisor of several.

:func:`run_worker` runs one worker in this process and prints a periodic
progress line to stderr. :func:`supervise` (``--processes N``) starts N
worker processes (``python -m jobs_core worker ...``, each a full worker in
its own session), forwards SIGTERM and SIGINT to them, and exits when all of
them have, with status 0 only if every one exited 0. The backend URL reaches
the children through ``JOBS_URL``, never on their command line.

A worker past ``--max-memory`` finishes its running jobs and exits with
:data:`~jobs_core.worker_health.RECYCLE_STATUS`; :func:`supervise` starts
a new process in its place. ``--health-port`` serves HTTP probes: from the
worker itself, or, under ``--processes``, from the health file each child
writes (``--health-file``).

The supervisor lives in :mod:`jobs_core.cli_supervisor` and the options in
:mod:`jobs_core.cli_worker_options`; both are importable from here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobs_core.app import JobsApp
from jobs_core.cli_output import missing_url
from jobs_core.cli_say import Say, set_log_level
from jobs_core.cli_supervisor import ENV_SUPERVISOR, supervise
from jobs_core.cli_worker_options import WorkerOptions
from jobs_core.config import ENV_URL, JobsConfig
from jobs_core.errors import ConfigurationError
from jobs_core.facade import set_default_app
from jobs_core.flow import parse_rate
from jobs_core.quiet_threads import quiet
from jobs_core.worker import Service, Worker
from jobs_core.worker_health import (
    RECYCLE_STATUS,
    HealthFile,
    HealthServer,
    MemoryLimit,
    ParentWatch,
    parse_address,
    parse_size,
)

__all__ = [
    "ENV_SUPERVISOR",
    "WorkerOptions",
    "load_plugin",
    "prepare_app",
    "run_worker",
    "supervise",
]

_say = Say("jobs worker", "jobs_core.worker")
_use_log_format = _say.use_format


def _summary(worker: Worker) -> str:
    stats = worker.stats
    return (
        f"processed {stats.processed}, retried {stats.retried}, failed {stats.failed}, "
        f"released {stats.released}, in flight {stats.in_flight}"
    )


class _Progress:
    """Prints a one-line summary with the recent rate every ``interval`` seconds."""

    def __init__(self, worker: Worker, interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=quiet(self._loop), name="jobs-progress", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        last, last_at = 0, time.monotonic()
        while not self._stop.wait(self.interval):
            handled, now = self.worker.stats.handled, time.monotonic()
            rate = (handled - last) / max(1e-9, now - last_at)
            last, last_at = handled, now
            _say(f"{_summary(self.worker)} ({rate:.1f} jobs/s)")


def load_plugin(spec: str, app: JobsApp) -> None:
    """Attach the plugin named by ``spec`` (``--plugin MODULE[:OBJECT]``) to ``app``.

    ``MODULE`` is imported. Without ``:OBJECT`` the module itself is
    registered as a plugin (its ``@hookimpl`` functions). ``OBJECT`` (a
    dotted path inside the module) is registered as a plugin when it is an
    object with hook implementations; a class is first instantiated with no
    arguments (``jobs_core:LoggingMiddleware``); a function is called with
    the app, and may call ``app.listen(...)`` and ``app.register_plugin(...)``.
    Raises :class:`~jobs_core.errors.ConfigurationError` naming what is
    missing.
    """
    module_name, _, path = spec.partition(":")
    if not module_name or (":" in spec and not path):
        raise ConfigurationError(f"--plugin {spec!r}: expected MODULE or MODULE:OBJECT")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--plugin {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in path.split(".") if path else ():
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"--plugin {spec!r}: {module_name!r} has no {path!r}") from None
    if isinstance(target, type):
        try:
            target = target()
        except TypeError as exc:
            raise ConfigurationError(
                f"--plugin {spec!r}: the class {path!r} cannot be made without arguments ({exc}); "
                "name an instance or a function taking the app instead"
            ) from exc
    elif inspect.isfunction(target):
        target(app)
        return
    app.register_plugin(target, name=f"--plugin {spec}")


def prepare_app(app: JobsApp, options: WorkerOptions) -> None:
    """Attach ``options.plugins`` and register the jobs of ``options.imports`` on ``app``.

    ``app`` must already be the facade's default app, so that what the
    modules do through :class:`~jobs_core.facade.Jobs` at import
    (``Jobs.listen``, ``Jobs.register_plugin``, ``Jobs.register``) applies
    to it. An imported module that configures ``Jobs`` for another backend
    than the one given with ``--url`` or ``JOBS_URL`` is refused; when
    neither was given, the module's configuration is the worker's.
    """
    given = options.url or os.environ.get(ENV_URL)
    expected = app.config
    for spec in options.plugins:
        load_plugin(spec, app)
        _check_configuration(app, expected, given, f"--plugin {spec}")
        expected = app.config
    for module in options.imports:
        app.register_module(module)
        _check_configuration(app, expected, given, f"--import {module}")
        expected = app.config


def _check_configuration(app: JobsApp, before: JobsConfig, given: str | None, source: str) -> None:
    after = app.config
    if after == before or not given:
        return
    raise ConfigurationError(
        f"{source} configured Jobs for {after.display_url}, but this worker serves "
        f"{before.display_url} (from --url or JOBS_URL): jobs would be run from one and "
        "dispatched to the other; configure one backend"
    )


def run_worker(
    options: WorkerOptions,
    services: Sequence[Service | Callable[[threading.Event], object]] = (),
    app: JobsApp | None = None,
) -> int:
    """Run one worker with ``options`` until it stops; return the exit status (0).

    The backend is ``options.url``, else ``JOBS_URL``, else what an
    ``--import``/``--plugin`` module configured with ``Jobs.configure``;
    with none of them it raises :class:`~jobs_core.errors.ConfigurationError`
    naming ``--url`` and ``JOBS_URL`` (an in-memory queue is served only when
    asked for, ``--url memory://``); a given ``app`` is served as it is.
    ``services`` run beside the worker (see :class:`~jobs_core.worker.Service`).
    While it runs, the worker's app is the default app of the ``Jobs``
    facade, from before ``--plugin`` and ``--import`` modules are imported.
    Raises :class:`~jobs_core.errors.JobsError` for configuration and
    backend errors (the CLI prints them as one line). Returns
    :data:`~jobs_core.worker_health.RECYCLE_STATUS` instead of 0 when
    ``--max-memory`` stopped the worker.
    """
    options.check()
    _use_log_format(options.log_format)
    set_log_level(options.log_level)
    unconfigured: JobsConfig | None = None
    if app is None:
        app = JobsApp(options.url) if options.url else JobsApp()
        if not (options.url or os.environ.get(ENV_URL)):
            # Only an imported module's own configuration may name the backend now.
            unconfigured = app.config
    previous = set_default_app(app)
    try:
        prepare_app(app, options)
        if app.config is unconfigured:
            raise missing_url("worker")
        if not len(app.registry):
            raise ConfigurationError(
                "no jobs are registered: pass --import MODULE with the module(s) that define your jobs"
            )
        app.driver.ping()
        worker = app.worker(
            options.queues,
            concurrency=options.concurrency,
            prefetch=options.prefetch,
            ack_interval=options.ack_interval,
            lease=options.lease,
            grace=options.grace,
            max_jobs=options.max_jobs,
            stop_when_empty=options.stop_when_empty,
            services=services,
            queue_order=options.queue_order,
            weights=options.weight_map(),
            queue_rate_limits=dict(parse_rate(text) for text in options.rate_limits) or None,
        )
        memory = None
        if options.max_memory is not None:
            memory = MemoryLimit(parse_size(options.max_memory), worker.stop)
            worker.services.append(memory)
        if options.health_file is not None:
            worker.services.append(HealthFile(options.health_file, worker.health))
        if os.environ.get(ENV_SUPERVISOR) == str(os.getppid()):
            worker.services.append(ParentWatch(os.getppid(), worker.stop))
            worker.same_signal_window = 1.0
        server = None
        if options.health_port is not None:
            server = HealthServer(parse_address(options.health_port), lambda: [worker.health()])
            server.start()
        _say(
            f"serving {', '.join(options.queues)} on {app.config.display_url} with "
            f"{len(app.registry)} jobs, concurrency {options.concurrency}"
            + (f", health probes on port {server.port}" if server else "")
        )
        progress = _Progress(worker, options.progress_interval)
        progress.start()
        started = time.monotonic()
        try:
            worker.run()
        finally:
            progress.stop()
            if server is not None:
                server.close()
        _say(f"stopped after {time.monotonic() - started:.1f}s: {_summary(worker)}")
    finally:
        set_default_app(previous)
        app.close()
    if memory is not None and memory.exceeded:
        _say(f"exiting with status {RECYCLE_STATUS} to be replaced (--max-memory)")
        return RECYCLE_STATUS
    return 0
