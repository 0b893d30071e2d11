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

What runs in a child process lives in :mod:`jobs_core.child_process`; how a
failed attempt is described (:func:`describe_error`, importable from here) in
:mod:`jobs_core.error_text`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from jobs_core.child_process import (
    child_main,
    decode_child_result,
    kill_and_reap,
    read_until,
    run_in_thread,
    timeout_error,
)
from jobs_core.error_text import describe_error
from jobs_core.errors import ChildDied, ChildJobError
from jobs_core.job import Job
from jobs_core.quiet_threads import quiet
from jobs_core.run import JobRun

__all__ = [
    "ChildDied",
    "ChildJobError",
    "Executor",
    "bind_executor",
    "current_executor",
    "describe_error",
    "is_async_job",
]

_ASYNC_CACHE: dict[type[Job], bool] = {}


def is_async_job(cls: type[Job]) -> bool:
    """Whether ``cls.handle`` is ``async def`` (cached per class)."""
    cached = _ASYNC_CACHE.get(cls)
    if cached is None:
        cached = _ASYNC_CACHE[cls] = inspect.iscoroutinefunction(cls.handle)
    return cached


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
        return run_in_thread(run, timeout)

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
            raise timeout_error(timeout) from None

    # -- the event loop -----------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=quiet(loop.run_forever), name="jobs-event-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    # -- child processes ----------------------------------------------------

    def _run_in_child(self, run: JobRun, timeout: float) -> Any:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            os.close(read_fd)
            child_main(run, write_fd)
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
            data = read_until(read_fd, time.monotonic() + timeout)
            if data is None:
                kill_and_reap(pid)
                reaped = True
                raise timeout_error(timeout)
            _, status = os.waitpid(pid, 0)
            reaped = True
            return decode_child_result(data, status)
        finally:
            os.close(read_fd)
            if not reaped:
                kill_and_reap(pid)
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
