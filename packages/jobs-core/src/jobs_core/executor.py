"""Running one job: sync or async, with or without a time limit.

* A sync job without a timeout runs in the calling thread: no hop, no copy.
* A sync job with a timeout runs in a forked child process that is killed
  (``SIGKILL``) at the deadline, because a Python thread cannot be stopped
  from outside (``time.sleep`` and C calls ignore injected exceptions). The
  child inherits the registry and the job; its result or error comes back as
  JSON over a pipe. Where ``fork`` is not available the job runs in a thread
  and the timeout is enforced on a best-effort basis (an exception injected
  into the thread), and the attempt counts as failed at the deadline either way.
* An ``async def`` job runs on the worker's event loop, in its own thread,
  under :func:`asyncio.wait_for`; at the deadline it is cancelled.

A job stopped at its deadline raises :class:`~jobs_core.errors.JobTimeout`.

Just over 400 lines: the three ways of running a job share the shutdown
(cancelling tasks, killing children) that this module's :class:`Executor` owns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import inspect
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Coroutine
from typing import Any

from jobs_core.errors import JobsError, JobTimeout, Retry, SkipJob
from jobs_core.job import Job
from jobs_core.limits import MAX_ERROR_CHARS
from jobs_core.run import JobRun

_ASYNC_CACHE: dict[type[Job], bool] = {}


def is_async_job(cls: type[Job]) -> bool:
    """Whether ``cls.handle`` is ``async def`` (cached per class)."""
    cached = _ASYNC_CACHE.get(cls)
    if cached is None:
        cached = _ASYNC_CACHE[cls] = inspect.iscoroutinefunction(cls.handle)
    return cached


class ChildJobError(JobsError):
    """An exception raised by a job that ran in a child process.

    ``type_name`` is the qualified name of the original exception type and
    ``traceback_text`` its formatted traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        self.type_name = type_name
        self.traceback_text = traceback_text
        super().__init__(message)


class ChildDied(JobsError):
    """The child process running a job exited without reporting a result."""


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(summary, full)`` for a failed attempt.

    ``summary`` is ``"Type: message"``; ``full`` adds the traceback after a
    blank line. Both name the original type for jobs run in a child process.
    ``full`` is at most :data:`~jobs_core.limits.MAX_ERROR_CHARS` characters
    (its middle is cut), ``summary`` at most 500; an exception that cannot be
    turned into text is described by its type.
    """
    if isinstance(exc, ChildJobError):
        summary = f"{exc.type_name}: {_text_of(exc)}"
        return _clip(summary, 500), _clip(f"{summary}\n\n{exc.traceback_text}".rstrip(), MAX_ERROR_CHARS)
    summary = f"{_type_name(type(exc))}: {_text_of(exc)}"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    except Exception as trouble:  # an exception whose __str__ or notes fail
        text = f"(the traceback could not be formatted: {type(trouble).__name__})"
    return _clip(summary, 500), _clip(f"{summary}\n\n{text}".rstrip(), MAX_ERROR_CHARS)


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot be shown."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: its head and its tail, with the cut said."""
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text) - limit} characters cut ...]\n"
    keep = max(0, limit - len(note))
    head = keep // 3
    return text[:head] + note + text[len(text) - (keep - head) :]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without its leading frames from jobs_core itself (the worker's own calls)."""
    first = tb
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _PACKAGE_DIR:
        tb = tb.tb_next
    return tb if tb is not None else first


def _type_name(cls: type) -> str:
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _timeout_error(timeout: float) -> JobTimeout:
    return JobTimeout(f"job exceeded its timeout of {timeout:g}s and was stopped")


class Executor:
    """Runs jobs for one worker; owns its event loop thread and child processes."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._children: set[int] = set()
        self._tasks: set[concurrent.futures.Future[Any]] = set()
        self._loop_tasks: set[asyncio.Task[Any]] = set()  # touched on the loop's thread only
        self._stoppers: dict[str, Callable[[], object]] = {}  # by job id: what stops its run

    # -- entry points -------------------------------------------------------

    def execute(self, run: JobRun) -> Any:
        """Run the job of ``run`` to completion in the calling thread and return its result."""
        timeout = run.message.timeout
        if is_async_job(type(run.job)):
            return self.submit_async(run).result()
        if timeout is None:
            return run.job.handle(run.payload)
        if hasattr(os, "fork"):
            return self._run_in_child(run, timeout)
        return _run_in_thread(run, timeout)

    def submit_async(self, run: JobRun) -> concurrent.futures.Future[Any]:
        """Start an ``async def`` job on the event loop; return a future of its result."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._run_coroutine(run), loop)
        ident = run.message.id
        with self._lock:
            self._tasks.add(future)
            self._stoppers[ident] = future.cancel
        future.add_done_callback(self._tasks.discard)
        future.add_done_callback(lambda _: self._forget_stopper(ident, future.cancel))
        return future

    def _forget_stopper(self, ident: str, stop: Callable[[], object]) -> None:
        with self._lock:
            if self._stoppers.get(ident) == stop:
                del self._stoppers[ident]

    def cancel_job(self, job_id: str) -> bool:
        """Stop the run of job ``job_id`` if this executor can: cancel its ``async``
        task, or kill its child process (a sync job with a timeout). ``False`` if
        it runs in a thread of the worker (it sees ``Job.cancelled`` instead).
        """
        with self._lock:
            stop = self._stoppers.get(job_id)
        if stop is None:
            return False
        stop()
        return True

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the event loop's thread, soon (from any thread)."""
        self._ensure_loop().call_soon_threadsafe(callback)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coroutine`` as a task of the event loop; call it on the loop's thread.

        :meth:`cancel_all` cancels the task.
        """
        loop = self._ensure_loop()
        task = loop.create_task(coroutine)
        self._loop_tasks.add(task)
        task.add_done_callback(self._loop_tasks.discard)
        return task

    @staticmethod
    async def run_coroutine(run: JobRun) -> Any:
        """Await the ``async def`` job of ``run``, within its timeout."""
        return await Executor._run_coroutine(run)

    @staticmethod
    async def _run_coroutine(run: JobRun) -> Any:
        coroutine: Coroutine[Any, Any, Any] = run.job.handle(run.payload)
        timeout = run.message.timeout
        if timeout is None:
            return await coroutine
        try:
            return await asyncio.wait_for(coroutine, timeout)
        except asyncio.TimeoutError:
            raise _timeout_error(timeout) from None

    # -- the event loop -----------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="jobs-event-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    # -- child processes ----------------------------------------------------

    def _run_in_child(self, run: JobRun, timeout: float) -> Any:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            os.close(read_fd)
            _child_main(run, write_fd)
        os.close(write_fd)
        ident = run.message.id

        def kill() -> None:  # the reading thread reaps the child
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

        with self._lock:
            self._children.add(pid)
            self._stoppers[ident] = kill
        reaped = False
        try:
            data = _read_until(read_fd, time.monotonic() + timeout)
            if data is None:
                _kill(pid)
                reaped = True
                raise _timeout_error(timeout)
            _, status = os.waitpid(pid, 0)
            reaped = True
            return _decode_child_result(data, status)
        finally:
            os.close(read_fd)
            if not reaped:
                _kill(pid)
            with self._lock:
                self._children.discard(pid)
                if self._stoppers.get(ident) is kill:
                    del self._stoppers[ident]

    # -- shutdown -----------------------------------------------------------

    def cancel_all(self) -> None:
        """Stop every running job now: kill child processes, cancel async jobs."""
        with self._lock:
            children = list(self._children)
            tasks = list(self._tasks)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for task in tasks:
            task.cancel()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_loop_tasks)

    def _cancel_loop_tasks(self) -> None:
        for task in list(self._loop_tasks):
            task.cancel()

    def close(self) -> None:
        """Stop the event loop thread (after cancelling what still runs on it)."""
        self.cancel_all()
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()


def _child_main(run: JobRun, write_fd: int) -> None:  # pragma: no cover - runs in the child
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
                "type": _type_name(type(exc)),
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


def _read_until(fd: int, deadline: float) -> bytes | None:
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


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _decode_child_result(data: bytes, status: int) -> Any:
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


def _run_in_thread(run: JobRun, timeout: float) -> Any:  # pragma: no cover - platforms without fork
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run.job.handle(run.payload)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="jobs-timed-job", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        _inject(thread, JobTimeout)
        raise _timeout_error(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _inject(thread: threading.Thread, exc_type: type[BaseException]) -> None:  # pragma: no cover
    ident = thread.ident
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))


#: The executor of the worker running in the current thread (see :func:`current_executor`).
_LOCAL = threading.local()


def current_executor() -> Executor:
    """The executor bound to this thread by the worker, or a shared fallback."""
    executor: Executor | None = getattr(_LOCAL, "executor", None)
    if executor is None:
        executor = _fallback()
    return executor


def bind_executor(executor: Executor | None) -> Callable[[], None]:
    """Bind ``executor`` to the calling thread; return a function that restores the previous one."""
    previous = getattr(_LOCAL, "executor", None)
    _LOCAL.executor = executor

    def restore() -> None:
        _LOCAL.executor = previous

    return restore


_FALLBACK: list[Executor] = []


def _fallback() -> Executor:
    if not _FALLBACK:
        _FALLBACK.append(Executor())
    return _FALLBACK[0]
