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
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from jobs_core.app import JobsApp
from jobs_core.cli_output import missing_url
from jobs_core.config import ENV_URL, JobsConfig
from jobs_core.errors import ConfigurationError
from jobs_core.facade import set_default_app
from jobs_core.flow import parse_rate
from jobs_core.worker import Service, Worker
from jobs_core.worker_health import (
    RECYCLE_STATUS,
    HealthFile,
    HealthServer,
    JsonFormatter,
    MemoryLimit,
    ParentWatch,
    WorkerHealth,
    combine,
    parse_address,
    parse_size,
    read_health_files,
    use_log_format,
)


@dataclass(frozen=True)
class WorkerOptions:
    """The options of ``jobs worker``."""

    url: str | None
    queues: tuple[str, ...]
    concurrency: int = 1
    processes: int = 1
    imports: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    max_jobs: int | None = None
    stop_when_empty: bool = False
    grace: float = 30.0
    lease: float = 30.0
    prefetch: int | None = None
    ack_interval: float = 0.05
    progress_interval: float = 10.0
    log_level: str = "WARNING"
    queue_order: str | None = None
    weights: tuple[str, ...] = ()
    rate_limits: tuple[str, ...] = ()
    log_format: str = "text"
    max_memory: str | None = None
    health_port: str | None = None
    health_file: str | None = None

    def check(self) -> None:
        """Refuse a bad ``--max-memory`` or ``--health-port`` before anything starts."""
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if self.health_port is not None:
            parse_address(self.health_port)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WorkerOptions:
        """Build from the click parameters of the ``worker`` command (unknown keys ignored)."""
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in params.items() if k in fields}
        values["queues"] = tuple(values.get("queues") or ("default",))
        values["imports"] = tuple(values.get("imports") or ())
        values["plugins"] = tuple(values.get("plugins") or ())
        values["weights"] = tuple(values.get("weights") or ())
        values["rate_limits"] = tuple(values.get("rate_limits") or ())
        return cls(**values)

    def weight_map(self) -> dict[str, int] | None:
        """``--weight QUEUE=N`` values as a dict (``None`` when none was given)."""
        if not self.weights:
            return None
        weights: dict[str, int] = {}
        for text in self.weights:
            name, _, number = text.partition("=")
            try:
                weights[name] = int(number)
            except ValueError:
                raise ConfigurationError(f"--weight takes QUEUE=N, N a whole number; got {text!r}") from None
        return weights

    def child_args(self) -> list[str]:
        """Command-line arguments of one child worker (without ``--url``)."""
        args = ["worker", "--processes", "1", "--concurrency", str(self.concurrency)]
        for queue in self.queues:
            args += ["--queue", queue]
        for module in self.imports:
            args += ["--import", module]
        for plugin in self.plugins:
            args += ["--plugin", plugin]
        if self.max_jobs is not None:
            args += ["--max-jobs", str(self.max_jobs)]
        if self.stop_when_empty:
            args.append("--stop-when-empty")
        args += ["--grace", repr(self.grace), "--lease", repr(self.lease)]
        if self.prefetch is not None:
            args += ["--prefetch", str(self.prefetch)]
        args += ["--ack-interval", repr(self.ack_interval)]
        if self.queue_order is not None:
            args += ["--queue-order", self.queue_order]
        for weight in self.weights:
            args += ["--weight", weight]
        for limit in self.rate_limits:
            args += ["--rate-limit", limit]
        args += ["--progress", repr(self.progress_interval), "--log-level", self.log_level]
        args += ["--log-format", self.log_format]
        if self.max_memory is not None:
            args += ["--max-memory", self.max_memory]
        return args


_json_lines = False
#: Set by :func:`supervise` for its worker processes: its process id (they stop when it is gone).
ENV_SUPERVISOR = "JOBS_SUPERVISOR_PID"


def _say(text: str) -> None:
    if _json_lines:
        record = logging.LogRecord("jobs_core.worker", logging.INFO, __file__, 0, text, None, None)
        click.echo(JsonFormatter().format(record), err=True)
    else:
        click.echo(f"jobs worker[{os.getpid()}]: {text}", err=True)


def _use_log_format(name: str) -> None:
    global _json_lines
    _json_lines = name == "json"
    use_log_format(name)


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
        self._thread = threading.Thread(target=self._loop, name="jobs-progress", daemon=True)

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
    logging.getLogger("jobs_core").setLevel(options.log_level.upper())
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


def supervise(options: WorkerOptions) -> int:
    """Run ``options.processes`` worker processes; forward signals; return the exit status.

    A child that exits with :data:`~jobs_core.worker_health.RECYCLE_STATUS`
    (``--max-memory``) before a stop was asked for is replaced by a new one.
    With ``--health-port`` or ``--health-file`` each child writes its health
    to a file of its own, and this process answers for all of them.
    """
    options.check()
    _use_log_format(options.log_format)
    env = dict(os.environ)
    if options.url:
        env["JOBS_URL"] = options.url
    env[ENV_SUPERVISOR] = str(os.getpid())
    command = [sys.executable, "-m", "jobs_core", *options.child_args()]
    scratch = None
    files: list[str] = []
    if options.health_port is not None or options.health_file is not None:
        scratch = tempfile.mkdtemp(prefix="jobs-health-")
        files = [os.path.join(scratch, f"worker-{slot}.json") for slot in range(options.processes)]

    def start(slot: int) -> subprocess.Popen[bytes]:
        health = ["--health-file", files[slot]] if files else []
        return subprocess.Popen([*command, *health], env=env, start_new_session=True)

    forwarded: set[int] = set()

    def report() -> list[WorkerHealth]:
        processes = read_health_files(files)
        if forwarded:  # stopping, from the signal on (the children's files follow within a second)
            return [WorkerHealth(False, p.live, "stopping") for p in processes]
        return processes

    def health() -> WorkerHealth:
        return combine(report())

    children = [start(slot) for slot in range(options.processes)]
    _say(f"started {len(children)} worker processes: {', '.join(str(c.pid) for c in children)}")

    def forward(signum: int, frame: types.FrameType | None) -> None:
        forwarded.add(signum)
        for child in children:
            if child.poll() is None:
                try:
                    child.send_signal(signum)
                except OSError:
                    pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_services = threading.Event()
    services: list[Service] = []
    try:
        if options.health_port is not None:
            address = parse_address(options.health_port)
            services.append(HealthServer(address, report))
        if options.health_file is not None:
            services.append(HealthFile(options.health_file, health))
        for service in services:
            service.start(stop_services)
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for slot, child in enumerate(children):
                code = child.poll() if slot not in codes else None
                if code is None:
                    continue
                if code == RECYCLE_STATUS and not forwarded:
                    children[slot] = start(slot)
                    _say(f"worker process {child.pid} recycled (--max-memory); started {children[slot].pid}")
                else:
                    codes[slot] = code
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_services.set()
        for service in services:
            service.join(5)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    # A child killed by a signal we forwarded died before it installed its
    # handlers, that is before it reserved anything: a clean stop. One that
    # was recycling when the stop came stopped cleanly too.
    results = [codes[slot] for slot in range(len(children))]
    results = [
        0 if (code < 0 and -code in forwarded) or (code == RECYCLE_STATUS and forwarded) else code
        for code in results
    ]
    for child, code in zip(children, results, strict=True):
        if code != 0:
            _say(f"worker process {child.pid} exited with status {code}")
    return next((code for code in results if code > 0), 1) if any(results) else 0
