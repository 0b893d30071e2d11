"""Running many jobs at once: runner threads for sync jobs, the event loop for async ones.

:class:`PooledWorker` reserves batches and hands them out: sync jobs to runner
threads (started as they are needed, at most ``concurrency``), ``async def``
jobs to the event loop, where lanes (tasks) run them one after the other, at
most ``concurrency`` at once of both kinds together; its prefetch window
follows the jobs' pace.

Over 400 lines: the runner threads, the event loop's tasks and the prefetch
window share one count of running jobs and one lock, so they stay together.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from jobs_core.context import enter_job
from jobs_core.executor import Executor, bind_executor, is_async_job
from jobs_core.job import Job
from jobs_core.message import Delivery
from jobs_core.quiet_threads import quiet
from jobs_core.run import JobRun
from jobs_core.worker_core import (
    _PROCESSING,
    DEFAULT_INLINE_PREFETCH,
    PREFETCH_SECONDS,
    WorkerCore,
    _ForcedStop,
    log,
)

#: Seconds a sync job must wait on average (I/O, sleep) for its runner to wake
#: more threads: jobs that only compute take turns under the GIL, so waking
#: others for them costs thread switches and gains nothing.
BLOCKING_JOB_SECONDS = 0.0001

#: The most one job adds to that measure: a compute-only job that the machine
#: paused for a few milliseconds (another process, a garbage collection, the
#: GIL) must not send the next hundreds of jobs to runner threads; two jobs in
#: a row that wait this long are enough to wake them.
BLOCKED_SAMPLE_CAP = 4 * BLOCKING_JOB_SECONDS

#: Most deliveries reserved at once while the reserving thread runs the jobs
#: itself (as many as the inline worker's batches).
HERE_BATCH = DEFAULT_INLINE_PREFETCH


class PooledWorker(WorkerCore):
    """A worker that runs up to ``concurrency`` jobs at once (see :class:`~jobs_core.worker.Worker`)."""

    # -- concurrency > 1: a pool of threads and the event loop ----------------
    #
    # The worker's thread reserves batches and hands them out: sync jobs to
    # runner threads (started as they are needed, at most ``concurrency``),
    # ``async def`` jobs to the event loop, where lanes run them (see _lane). At most
    # ``concurrency`` jobs run at once, of both kinds together. Threads are
    # woken only when there is something for them: a runner when a delivery
    # waits and no runner is free, the reserving thread when the prefetch
    # window is at least half empty.

    def _has_room(self) -> bool:
        """Whether the reserving thread should reserve more (call holding the lock)."""
        queued = len(self._ready) + len(self._async_ready)
        free = self.concurrency + self._window - queued - len(self._running)
        return free > 0 and (queued == 0 or free >= self._low_water)

    def _adapt_window(self) -> None:
        """Size the prefetch window to about :data:`PREFETCH_SECONDS` of work at the recent pace."""
        now = time.monotonic()
        elapsed = now - self._paced_at
        done = self._done_count
        if elapsed < 0.2 and (elapsed < 0.01 or done - self._paced_count < 4 * self._window):
            return  # every 0.2 s, sooner while fast jobs outrun a small window (at the start)
        rate = (done - self._paced_count) / elapsed
        self._paced_at, self._paced_count = now, done
        self._window = max(self.concurrency, min(self.prefetch, int(rate * PREFETCH_SECONDS)))
        self._low_water = max(1, self._window // 2)

    def _run_pooled(self) -> None:
        # Reserve in batches: while deliveries are still waiting locally, wait
        # until at least half of the prefetch window is free.
        self._low_water = max(1, self._window // 2)
        self._paced_at, self._paced_count = time.monotonic(), 0
        self._last_finish = time.monotonic()  # the stall check of the tick counts from here
        short = ran = False
        try:
            while not self._stopping:
                if self._adaptive:
                    self._adapt_window()
                capacity = self.concurrency + self._window
                with self._cv:
                    while not self._stopping and not self._has_room() and not self._may_run_here():
                        self._reserver_waiting = True
                        self._cv.wait(self.poll_interval or 0.1)
                        self._reserver_waiting = False
                    here = self._may_run_here()
                    queued = len(self._ready) + len(self._async_ready)
                    room = capacity - queued - len(self._running)
                    if self.max_jobs is not None:
                        room = min(room, self.max_jobs - self._reserved_total)
                    idle = not queued and not self._running
                if self.stopping:
                    break
                if here and not self._has_room():
                    # Jobs wait that only compute (measured by a runner, say): run them here.
                    try:
                        ran = self._run_here()
                    except (_ForcedStop, KeyboardInterrupt):
                        break  # stopped at once: the interrupted job was given back
                    if ran:
                        self._flush_acks_behind()
                    continue
                if room <= 0:
                    if idle:
                        break
                    with self._cv:
                        self._cv.wait(0.05)
                    continue
                if short and self._acks:
                    # The last reserve found less than it asked for: the backend may
                    # hold work back until finished jobs are acknowledged (a window of
                    # unfinished records), so acknowledge them now, not at the next tick.
                    self._flush_acks()
                if ran:
                    # The jobs run on this thread (see _run_here): reserve batches of the
                    # inline worker's size, not the whole window; fewer deliveries alive
                    # at once keep them in the CPU's caches.
                    room = min(room, HERE_BATCH)
                deliveries = self._reserve(room)
                short = len(deliveries) < room
                ran = False
                if deliveries:
                    self._hand_out(deliveries)
                    try:
                        ran = self._run_here()
                    except (_ForcedStop, KeyboardInterrupt):
                        break  # stopped at once: the interrupted job was given back
                    if ran:
                        # As the inline worker does: acknowledge the batch from this thread
                        # (or its ack thread) at once, before the heartbeat tick would, so
                        # that finished deliveries do not pile up and the two do not
                        # contend for the backend.
                        self._flush_acks_behind()
                elif self.stop_when_empty:
                    if idle:
                        break
                    with self._cv:
                        self._cv.wait(0.05)
        finally:
            self._drain()

    def _may_run_here(self) -> bool:
        """Whether the reserving thread should run waiting sync jobs itself now (lock held)."""
        return (
            bool(self._ready)
            and self._blocked_seconds < BLOCKING_JOB_SECONDS
            and bool(self._threads)
            and len(self._running) < self.concurrency
        )

    def _run_here(self) -> bool:
        """Run waiting sync jobs on this, the reserving, thread while they only compute; whether it ran any.

        Jobs that hardly wait on anything gain nothing from more threads under
        the GIL, and handing each to a runner costs two thread switches; so
        while the recent jobs' blocked time stays under
        :data:`BLOCKING_JOB_SECONDS`, the reserving thread runs the batch it
        reserved, one job at a time, as the inline worker does, and reserves
        the next batch when it is done. A job that turns out to block raises
        the measure and sends the next jobs to the runners; meanwhile the
        stall check of the heartbeat tick wakes runners for the jobs waiting
        behind it. One job at a time: the jobs behind it stay where a runner
        can take them. Each job costs one pass under the lock, which frees the
        previous job's place and takes the next.
        """
        # The lock itself, not the condition variables built on it: a Condition's
        # `with` is a Python-level call, twice per job.
        lock, running, process, concurrency = self._lock, self._running, self._process, self.concurrency
        ran = False
        delivery: Delivery | None = None
        while True:
            after = None
            with lock:
                if delivery is not None:
                    del running[delivery.receipt]
                    self._done_count += 1
                    self._last_finish = time.monotonic()
                    if (
                        self._async_ready
                        or self._reserver_waiting
                        or self._blocked_seconds >= BLOCKING_JOB_SECONDS
                    ):
                        after = self._wake_locked(on_loop=False)
                ready = self._ready
                if (
                    not ready
                    or len(running) >= concurrency
                    or self._stopping
                    or not self._threads
                    or self._blocked_seconds >= BLOCKING_JOB_SECONDS
                ):
                    delivery = None
                else:
                    delivery = ready.popleft()
                    running[delivery.receipt] = delivery
                    self._rescuing = False  # back to running them here
            if after is not None:
                self._after_finish(*after)
            if delivery is None:
                return ran
            ran = True
            sample = self._last_wall >= BLOCKING_JOB_SECONDS
            self._here = True  # a forced stop interrupts this thread's job (see _tick)
            try:
                measured = process(delivery, sample)
            except (_ForcedStop, KeyboardInterrupt):
                with lock:  # _process gave the job back
                    running.pop(delivery.receipt, None)
                raise
            except BaseException:
                log.exception("worker thread failed while running job %s", delivery.id)
                measured = None
            finally:
                self._here = False
            if measured is not None:
                self._note_wait(measured, sample)

    def _run_timed(self, delivery: Delivery) -> None:
        """Run one sync job on a runner thread; update the measure of how long jobs wait."""
        sample = self._last_wall >= BLOCKING_JOB_SECONDS
        try:
            measured = self._process(delivery, sample)
        except BaseException:
            log.exception("worker thread failed while running job %s", delivery.id)
            return
        if measured is not None:
            self._note_wait(measured, sample)

    def _note_wait(self, measured: tuple[float, float], sample: bool) -> None:
        """Update the measure of how long jobs wait from one job's ``(wall, cpu)`` (see :meth:`_process`).

        What is measured is the job's own code (its ``handle``), not the
        worker's bookkeeping around it, whose locks other threads share. The
        thread's CPU clock is read (a system call) only around jobs that follow
        long ones (``sample``): jobs shorter than :data:`BLOCKING_JOB_SECONDS`
        cannot have waited longer than that, so their wall time stands in.
        """
        wall, cpu = measured
        self._last_wall = wall
        if sample:
            # How long the job waited (I/O, sleep, locks): what more threads can overlap.
            blocked = wall - cpu
        elif wall < BLOCKING_JOB_SECONDS:
            blocked = wall
        else:
            return  # long and not measured: the next one is
        self._blocked_seconds += (min(blocked, BLOCKED_SAMPLE_CAP) - self._blocked_seconds) * 0.2

    def _hand_out(self, deliveries: Sequence[Delivery]) -> None:
        """Queue reserved deliveries for the runner threads or the event loop."""
        threaded: list[Delivery] = []
        on_loop: list[tuple[Delivery, Job]] = []
        sync_names = self._sync_names
        for delivery in deliveries:
            job = None if delivery.message.name in sync_names else self._async_job(delivery)
            if job is None:
                threaded.append(delivery)
            else:
                on_loop.append((delivery, job))
        with self._cv:
            if threaded:
                self._ready.extend(threaded)
                wake = min(len(threaded), self._idle_runners)
                if self._blocked_seconds < BLOCKING_JOB_SECONDS and self._threads:
                    # The recent jobs hardly wait on anything: under the GIL another
                    # thread would only take turns with the busy one, and the
                    # reserving thread runs them itself (_run_here).
                    wake = 0
                if wake:
                    self._work.notify(wake)
                missing = min(len(self._ready) - self._idle_runners, self.concurrency - len(self._threads))
                if self._blocked_seconds < BLOCKING_JOB_SECONDS and self._threads:
                    missing = 0
                for _ in range(missing):
                    thread = threading.Thread(
                        target=quiet(self._runner), name=f"jobs-runner-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
            if on_loop:
                self._async_ready.extend(on_loop)
        if on_loop:
            self.executor.call_soon(self._start_async)

    def _async_job(self, delivery: Delivery) -> Job | None:
        """The job of ``delivery`` if it runs on the event loop, else ``None`` (a runner thread runs it)."""
        if self._middleware:
            return None  # middleware hooks are sync: the job runs through them on a thread
        try:
            cls = self.registry.get(delivery.message.name)
            if not is_async_job(cls):
                self._sync_names.add(delivery.message.name)
                return None
            return cls()
        except Exception:
            return None  # a runner thread reports it (unregistered, cannot be built)

    def _start_async(self) -> None:
        """On the event loop: start waiting async jobs while fewer than ``concurrency`` run."""
        with self._lock:
            if self._stopping:
                return
            starting = self._next_async(self.concurrency - len(self._running))
        for delivery, job in starting:
            self.executor.spawn(self._lane(delivery, job))

    def _next_async(self, free: int) -> list[tuple[Delivery, Job]]:
        """Take up to ``free`` waiting async jobs and count them as running (call holding the lock)."""
        starting = [self._async_ready.popleft() for _ in range(max(0, min(free, len(self._async_ready))))]
        for delivery, _ in starting:
            self._running[delivery.receipt] = delivery
        return starting

    def _runner(self) -> None:
        restore = bind_executor(self.executor)
        try:
            while True:
                with self._work:
                    # While the jobs only compute, the reserving thread runs them (_run_here);
                    # runners take them then only while it is held up (see _rescue).
                    while not self._closing and not (
                        self._ready
                        and len(self._running) < self.concurrency
                        and not self._stopping
                        and (self._blocked_seconds >= BLOCKING_JOB_SECONDS or self._rescuing)
                    ):
                        self._idle_runners += 1
                        self._work.wait(5.0)  # woken when there is work; the timeout is a backstop
                        self._idle_runners -= 1
                    if self._closing:
                        return
                    delivery = self._ready.popleft()
                    self._running[delivery.receipt] = delivery
                self._run_timed(delivery)
                with self._cv:
                    after = self._finish_locked((delivery,), on_loop=False)
                self._after_finish(*after)
        finally:
            restore()

    def _finished(
        self,
        delivery: Delivery,
        on_loop: bool,
        outcome: tuple[Any, float] | None = None,
        handoff: list[tuple[Delivery, Job]] | None = None,
    ) -> None:
        """An async job has run on the loop: free its place, wake who can use it.

        ``outcome`` (result, duration) records a success in the same step.
        The async jobs waiting for the place start here too: the first one
        goes into ``handoff`` when given (the lane that ran this job runs it
        next), the others in lanes of their own.
        """
        with self._lock:  # the lock of the condition variables (a Condition's `with` costs more)
            starting, start_async = self._finish_locked((delivery,), on_loop, outcome, handoff)
        if starting or start_async:
            self._after_finish(starting, start_async)

    def _finish_locked(
        self,
        deliveries: Sequence[Delivery],
        on_loop: bool,
        outcome: tuple[Any, float] | None = None,
        handoff: list[tuple[Delivery, Job]] | None = None,
    ) -> tuple[list[tuple[Delivery, Job]], bool]:
        """Free the places of jobs that have run (call holding the lock); returns what to do after it
        (see :meth:`_wake_locked`). With ``handoff``, the next waiting async job, if one may
        start, is put there and counted as running (the lane that ran the job runs it next).
        """
        if outcome is not None:
            (delivery,) = deliveries
            if delivery.receipt not in self._released:
                self._acks.append(delivery)
                if self._keep_results and outcome[0] is not None:
                    self._results[delivery.receipt] = outcome[0]
                if self._emit_processed:
                    self._processed_events.append((delivery.message, *outcome))
                self._processed += 1
        running = self._running
        for delivery in deliveries:
            running.pop(delivery.receipt, None)
        self._done_count += len(deliveries)
        self._last_finish = time.monotonic()
        if (
            handoff is not None
            and self._async_ready
            and not self._stopping
            and len(running) < self.concurrency
        ):
            following = self._async_ready.popleft()
            running[following[0].receipt] = following[0]
            handoff.append(following)
        return self._wake_locked(on_loop)

    def _wake_locked(self, on_loop: bool) -> tuple[list[tuple[Delivery, Job]], bool]:
        """Wake who can use the places just freed (lock held); returns what to do after it.

        That is: the async jobs to start on the loop, and whether to ask the
        loop to start some.
        """
        start_async = False
        starting: list[tuple[Delivery, Job]] = []
        free = self.concurrency - len(self._running)
        if free > 0:
            if self._ready and self._idle_runners:
                if self._blocked_seconds >= BLOCKING_JOB_SECONDS:
                    self._work.notify()
                elif on_loop:
                    self._rescue()  # the reserving thread may be busy elsewhere
            if self._async_ready and not self._stopping:
                if on_loop:
                    starting = self._next_async(free)
                else:
                    start_async = True
        if self._reserver_waiting and (self._has_room() or self._may_run_here()):
            self._cv.notify()
        return starting, start_async

    def _rescue(self) -> None:
        """Let idle runners take waiting jobs whatever the jobs' measure, until the reserving
        thread runs jobs again (lock held): it is held up in a long job, or elsewhere.
        """
        self._rescuing = True
        self._work.notify()

    def _after_finish(self, starting: list[tuple[Delivery, Job]], start_async: bool) -> None:
        """Act on what :meth:`_finish_locked` found, without the lock."""
        for waiting, job in starting:
            self.executor.spawn(self._lane(waiting, job))
        if start_async:
            self.executor.call_soon(self._start_async)

    def _drain(self) -> None:
        """Stop: give back what has not started, wait for running jobs up to the grace period."""
        waiting = self._take_ready()
        with self._cv:
            self._work.notify_all()
        self._release(waiting)
        deadline = (self._stop_at if self._stopping else time.monotonic()) + self.grace
        running: list[Delivery] = []
        while True:
            with self._cv:
                if not self._running:
                    break
                if self._force or time.monotonic() >= deadline:
                    running = list(self._running.values())
                    break
                self._cv.wait(0.1)
        if running:
            log.warning("giving back %d jobs still running after the grace period", len(running))
            self._release(running)
            self.executor.cancel_all()
        with self._cv:
            self._closing = True
            self._work.notify_all()
            self._cv.notify_all()

    async def _lane(self, delivery: Delivery, job: Job) -> None:
        """Run async jobs one after the other in one task, while more wait for a place.

        A lane takes the next waiting job when its job ends, in the same step
        of the event loop: no task to create and no extra loop iteration per
        job. A cancellation meant for one job (``Jobs.cancel``) is delivered
        only while the lane still runs that job, and is cleared before the next.
        """
        task = asyncio.current_task()
        assert task is not None
        lanes = self._lanes
        handoff: list[tuple[Delivery, Job]] = []
        while True:
            lanes[task] = delivery
            try:
                await self._run_async(delivery, job, handoff, task)
            except asyncio.CancelledError:
                if self._stopping:
                    lanes.pop(task, None)
                    raise  # stopped at the end of the grace period: the worker gave the jobs back
            if sys.version_info >= (3, 11):
                while task.cancelling():
                    task.uncancel()  # the cancelled job is over: the next one starts afresh
            if not handoff:
                lanes.pop(task, None)
                return
            delivery, job = handoff.pop()

    def _cancel_in_lane(self, task: asyncio.Task[Any], delivery: Delivery) -> None:
        """On the loop: cancel ``task`` if it still runs ``delivery`` (its lane may have moved on)."""
        if self._lanes.get(task) is delivery:
            task.cancel()

    async def _run_async(
        self,
        delivery: Delivery,
        job: Job,
        handoff: list[tuple[Delivery, Job]] | None = None,
        task: asyncio.Task[Any] | None = None,
    ) -> None:
        """Run one ``async def`` job on the event loop (pooled workers), to its outcome.

        A failed attempt is settled on a helper thread (it makes a backend
        round trip), so the loop keeps running the other jobs meanwhile. The
        next waiting job, if any, is put in ``handoff`` (see :meth:`_lane`).
        """
        message = delivery.message
        gated = self._flow_all or bool(message.headers)
        if gated and self._flow.may_start(delivery) is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._late, delivery)
            self._finished(delivery, on_loop=True, handoff=handoff)
            return
        enter_job(job, message)  # the lane's own context: the next job's enter_job replaces it
        outcome: tuple[Any, float] | None = None
        loop = asyncio.get_running_loop()
        if self._tracking:
            task = task or asyncio.current_task()
            if task is not None:
                self._tracker.start(
                    job,
                    delivery,
                    functools.partial(loop.call_soon_threadsafe, self._cancel_in_lane, task, delivery),
                )
            if message.id in self._tracker.cancelled:  # cancelled before it started
                await loop.run_in_executor(None, self._finish_cancelled, delivery)
                self._finished(delivery, on_loop=True, handoff=handoff)
                return
        try:
            if self._emit_processing:
                self.events.emit(_PROCESSING, message=message)
            started = time.perf_counter()
            try:
                if message.timeout is None:
                    result = await job.handle(message.payload)
                else:
                    result = await Executor.run_coroutine(JobRun(message, job, message.payload, delivery))
            except asyncio.CancelledError:
                if self._tracking and message.id in self._tracker.cancelled:
                    await loop.run_in_executor(None, self._finish_cancelled, delivery)
                else:
                    self._release([delivery])
                return
            except BaseException as exc:
                await asyncio.get_running_loop().run_in_executor(None, self._failure, delivery, exc)
                return
            if self._tracking and message.id in self._tracker.cancelled:
                await loop.run_in_executor(None, self._finish_cancelled, delivery)
            else:
                checked = self._with_result(delivery, result)
                if not isinstance(checked, Delivery):  # a chain link's result JSON cannot hold
                    await loop.run_in_executor(None, self._failure, delivery, checked)
                    return
                delivery = checked
                outcome = (result, time.perf_counter() - started)
        except Exception:
            log.exception("handling the outcome of job %s failed", delivery.id)
        finally:
            if self._tracking:
                self._tracker.finish(message.id)
            if gated:
                self._flow.finished(delivery)
            self._finished(delivery, on_loop=True, outcome=outcome, handoff=handoff)
