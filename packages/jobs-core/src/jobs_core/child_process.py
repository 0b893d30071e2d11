"""A sync job with a timeout, run where it can be stopped at its deadline.

On a platform with ``fork`` the job runs in a forked child process that
reports its result or error as JSON over a pipe and is killed (``SIGKILL``) at
the deadline; elsewhere it runs in a thread that gets an exception injected at
the deadline (best effort). :class:`~jobs_core.executor.Executor` owns the
children it starts (to kill them at shutdown); this module holds what runs in
the child and how its answer is read back.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any

from jobs_core.error_text import type_name
from jobs_core.errors import ChildDied, ChildJobError, JobTimeout, Retry, SkipJob
from jobs_core.quiet_threads import quiet
from jobs_core.run import JobRun

__all__ = [
    "child_main",
    "decode_child_result",
    "kill_and_reap",
    "read_until",
    "run_in_thread",
    "timeout_error",
]


def timeout_error(timeout: float) -> JobTimeout:
    """The error of a job stopped at its deadline."""
    return JobTimeout(f"job exceeded its timeout of {timeout:g}s and was stopped")


def child_main(run: JobRun, write_fd: int) -> None:  # pragma: no cover - runs in the child
    """Run the job of ``run`` in this (forked) process, write its outcome to ``write_fd``, exit."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            result = run.job.handle(run.payload)
            out: dict[str, Any] = {"kind": "ok", "result": _jsonable(result)}
        except Retry as exc:
            out = {"kind": "retry", "delay": exc.delay, "message": str(exc)}
        except SkipJob as exc:
            out = {"kind": "skip", "message": str(exc)}
        except BaseException as exc:
            out = {
                "kind": "error",
                "type": type_name(type(exc)),
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            }
        data = json.dumps(out, default=repr).encode()
        view = memoryview(data)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def read_until(fd: int, deadline: float) -> bytes | None:
    """Read ``fd`` to end of file; ``None`` if the deadline passes first."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def kill_and_reap(pid: int) -> None:
    """Kill child ``pid`` and wait for it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def decode_child_result(data: bytes, status: int) -> Any:
    """The job's result from what the child wrote and its exit status; raise what it raised."""
    if not data:
        if os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(status)}"
        raise ChildDied(f"the process running the job {how} before reporting a result")
    out = json.loads(data)
    kind = out.get("kind")
    if kind == "ok":
        return out.get("result")
    if kind == "retry":
        raise Retry(out.get("delay"), out.get("message") or "retry requested")
    if kind == "skip":
        raise SkipJob(out.get("message") or "")
    raise ChildJobError(out.get("type", "Exception"), out.get("message", ""), out.get("traceback", ""))


def run_in_thread(run: JobRun, timeout: float) -> Any:  # pragma: no cover - platforms without fork
    """Run the job in a thread, with an exception injected at the deadline (best effort)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run.job.handle(run.payload)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=quiet(target), name="jobs-timed-job", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        _inject(thread, JobTimeout)
        raise timeout_error(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _inject(thread: threading.Thread, exc_type: type[BaseException]) -> None:  # pragma: no cover
    ident = thread.ident
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
