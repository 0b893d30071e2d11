"""What a process manager needs from a worker: health, memory recycling, JSON logs.

* :class:`WorkerHealth` is what :meth:`Worker.health <jobs_core.worker.Worker.health>`
  answers: ready (serving its queues) and live (not stuck).
* :class:`HealthFile` writes that answer to a file every second (``jobs worker
  --health-file PATH``); :class:`HealthServer` answers HTTP probes on
  ``/ready`` and ``/live`` (``jobs worker --health-port PORT``), from the
  worker itself or, under ``--processes``, from its children's health files.
* :class:`MemoryLimit` stops a worker gracefully once its resident memory
  passes a limit (``jobs worker --max-memory SIZE``); the process then exits
  with :data:`RECYCLE_STATUS`, and ``--processes`` starts a fresh one.
* :class:`JsonFormatter` writes log records as one JSON object a line
  (``jobs worker --log-format json``).
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import logging
import os
import re
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from jobs_core.errors import ConfigurationError
from jobs_core.quiet_threads import quiet

log = logging.getLogger("jobs_core.worker")

#: Seconds without progress after which a worker is no longer live (see ``Worker.health``).
LIVENESS_WINDOW = 60.0
#: Exit status of a worker process that stopped to be replaced (``--max-memory``): EX_TEMPFAIL.
RECYCLE_STATUS = 75
#: Seconds between two checks of the resident memory, and between two writes of a health file.
CHECK_INTERVAL = 1.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class WorkerHealth:
    """A worker's health: ``ready`` to take work, ``live`` (not stuck), and why."""

    ready: bool
    live: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit K, M, G or T (powers of 1024).

    ``KiB``/``Ki``/``KB`` spellings are accepted and mean the same
    (``"512M"``, ``"512Mi"`` and ``"512MiB"`` are 536870912 bytes).
    Raises :class:`~jobs_core.errors.ConfigurationError` for anything else.
    """
    match = _SIZE.match(text)
    if not match:
        raise ConfigurationError(f"{text!r} is not a memory size (expected e.g. 512M, 1.5G or 300MiB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ConfigurationError(f"memory size {text!r} must be more than 0 bytes")
    return size


def rss_bytes() -> int:
    """Resident memory of this process now, in bytes (its peak where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _Ticker:
    """A daemon thread calling ``step()`` every ``interval`` seconds until the worker stops."""

    interval = CHECK_INTERVAL
    name = "jobs-ticker"

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self, stop_event: threading.Event) -> None:
        """Start the thread (a :class:`~jobs_core.worker.Service`)."""

        def loop() -> None:
            while True:
                self.step()
                if stop_event.wait(self.interval):
                    break
            self.finish()

        self._thread = threading.Thread(target=quiet(loop), name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def step(self) -> None:
        """One check."""

    def finish(self) -> None:
        """After the last check."""


class MemoryLimit(_Ticker):
    """Stops ``stop`` (a worker's graceful stop) once resident memory passes ``limit`` bytes.

    The running jobs finish within the grace period; the process then exits
    with :data:`RECYCLE_STATUS`. ``exceeded`` says whether it happened.
    """

    name = "jobs-memory"

    def __init__(self, limit: int, stop: Callable[[], None], measure: Callable[[], int] = rss_bytes) -> None:
        super().__init__()
        self.limit = limit
        self.exceeded = False
        self._stop = stop
        self._measure = measure

    def step(self) -> None:
        """Compare the resident memory with the limit."""
        if self.exceeded:
            return
        used = self._measure()
        if used > self.limit:
            self.exceeded = True
            log.warning(
                "resident memory %.1f MiB is over --max-memory %.1f MiB: this worker takes no more jobs, "
                "finishes the running ones and exits to be replaced",
                used / 2**20,
                self.limit / 2**20,
            )
            self._stop()


class ParentWatch(_Ticker):
    """Stops ``stop`` (a worker's graceful stop) once the process ``parent`` is no longer its parent.

    A worker process of ``--processes`` runs in a session of its own (so a
    terminal's Ctrl-C reaches it once, through its supervisor); should the
    supervisor die without passing a stop on (SIGKILL, the OOM killer), its
    workers finish their running jobs and exit instead of running on orphaned.
    """

    name = "jobs-parent-watch"

    def __init__(self, parent: int, stop: Callable[[], None]) -> None:
        super().__init__()
        self.parent = parent
        self._stop = stop
        self._stopped = False

    def step(self) -> None:
        """Compare the parent process with the one at the start."""
        if not self._stopped and os.getppid() != self.parent:
            self._stopped = True
            log.warning(
                "the supervising process %d is gone: finishing the running jobs and exiting", self.parent
            )
            self._stop()


class HealthFile(_Ticker):
    """Writes ``health()`` as JSON to ``path`` every second (atomically); removes it at the end.

    The file holds ``ready``, ``live``, ``reason``, ``pid`` and ``time``
    (Unix seconds); its modification time says the worker process is alive.
    """

    name = "jobs-health-file"

    def __init__(self, path: str, health: Callable[[], WorkerHealth]) -> None:
        super().__init__()
        self.path = path
        self._health = health

    def step(self) -> None:
        """Write the file."""
        data = {**self._health().to_dict(), "pid": os.getpid(), "time": time.time()}
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("could not write the health file %s: %s", self.path, exc)

    def finish(self) -> None:
        """Remove the file: a stopped worker is neither ready nor live."""
        with contextlib.suppress(OSError):
            os.remove(self.path)


def read_health_files(paths: Sequence[str], window: float = LIVENESS_WINDOW) -> list[WorkerHealth]:
    """The health written by :class:`HealthFile` at each of ``paths`` (one per worker process).

    A missing file is a process starting (or being replaced): not ready, live.
    A file not rewritten for ``window`` seconds is a stuck process: not live.
    """
    result: list[WorkerHealth] = []
    now = time.time()
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            age = now - os.stat(path).st_mtime
        except (OSError, ValueError):
            result.append(WorkerHealth(ready=False, live=True, reason="starting"))
            continue
        if age > window:
            result.append(WorkerHealth(ready=False, live=False, reason=f"no health report for {age:.0f}s"))
        else:
            result.append(WorkerHealth(bool(data["ready"]), bool(data["live"]), str(data["reason"])))
    return result


def combine(processes: Sequence[WorkerHealth]) -> WorkerHealth:
    """The health of several worker processes together: ready if all are, live if all are."""
    ready = bool(processes) and all(p.ready for p in processes)
    live = all(p.live for p in processes)
    reasons = sorted({p.reason for p in processes if not (p.ready and p.live)})
    return WorkerHealth(ready, live, "; ".join(reasons) or ("serving" if processes else "no worker process"))


class HealthServer:
    """HTTP probes for a worker: ``GET /ready`` and ``GET /live`` (also ``/readyz``, ``/livez``).

    Each answers 200 or 503 with a JSON body: ``ready``, ``live``, ``reason``
    and ``processes`` (the health of each worker process). ``report()``
    returns those per-process answers; the whole is ready when every one is,
    live when every one is. Runs on a daemon thread; ``address`` is
    ``(host, port)``, port 0 picks a free one (see :attr:`port`).
    """

    def __init__(self, address: tuple[str, int], report: Callable[[], list[WorkerHealth]]) -> None:
        self._report = report
        handler = self._handler()
        try:
            self._server = http.server.ThreadingHTTPServer(address, handler)
        except OSError as exc:
            where = f"{address[0]}:{address[1]}"
            raise ConfigurationError(f"--health-port: cannot listen on {where}: {exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=quiet(self._server.serve_forever), name="jobs-health", daemon=True
        )

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._server.server_address[1])

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """The status code and body for ``path``."""
        processes = self._report()
        whole = combine(processes)
        ready, live = whole.ready, whole.live
        body = {**whole.to_dict(), "processes": [p.to_dict() for p in processes]}
        probe = path.split("?", 1)[0].rstrip("/")
        if probe in ("/ready", "/readyz"):
            return (200 if ready else 503), body
        if probe in ("/live", "/livez", "/healthz"):
            return (200 if live else 503), body
        return 404, {"error": f"unknown path {path!r}; use /ready or /live"}

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        return Handler

    def start(self, stop_event: threading.Event | None = None) -> None:
        """Serve on the thread (also usable as a :class:`~jobs_core.worker.Service`)."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Stop serving."""
        self.close()

    def close(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` as ``(host, port)``; the host defaults to every interface."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ConfigurationError(f"--health-port {text!r}: expected PORT or HOST:PORT with PORT 0-65535")
    return (host.strip("[]") or "0.0.0.0", number)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``pid``, ``message``,
    ``exception`` (a formatted traceback, when there is one) and the record's ``jobs`` extra fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        extra = getattr(record, "jobs", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def use_log_format(name: str) -> None:
    """Format every handler of the root logger as ``name``: ``"text"`` (as is) or ``"json"``.

    With no handler yet, one writing to stderr is added first.
    """
    if name != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
