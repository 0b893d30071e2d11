"""The scheduling methods of an app and of the ``Jobs`` facade, delegated to a :class:`Scheduler`.

Each way to declare a schedule has its signature in one place,
:class:`~jobs_core.scheduler.Scheduler`; the app's methods (which register
the job on the app first) and the facade's (which use the default app) are
made from it, with the same parameters and documentation.
"""

from __future__ import annotations

import builtins
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from jobs_core.message import Message
from jobs_core.schedule_data import JobTarget, Schedule
from jobs_core.scheduler import Scheduler
from jobs_core.scheduler_runner import run_scheduler

if TYPE_CHECKING:
    from jobs_core.driver import Driver
    from jobs_core.queue import Queue
    from jobs_core.registry import Registry

P = ParamSpec("P")
R = TypeVar("R")


def on_app_scheduler(
    method: Callable[Concatenate[Scheduler, JobTarget, P], R],
) -> Callable[Concatenate[AppScheduling, JobTarget, P], R]:
    """An app method from a :class:`Scheduler` method: registers the job on the app, then declares."""

    def declare(self: AppScheduling, job: JobTarget, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.scheduler, self._schedulable(job), *args, **kwargs)

    declare.__name__ = method.__name__
    declare.__qualname__ = f"AppScheduling.{method.__name__}"
    declare.__doc__ = method.__doc__
    declare.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return declare


class AppScheduling:
    """The scheduling methods of :class:`~jobs_core.app.JobsApp`.

    The app's scheduler works on the app's driver and stores each tick's job
    through the app's :class:`~jobs_core.queue.Queue`, so ``job.queued``
    fires for scheduled jobs as for dispatched ones. Job classes and
    functions given here are registered on the app, as dispatch does.
    """

    if TYPE_CHECKING:

        @property
        def driver(self) -> Driver:
            """The app's driver."""

        @property
        def queue(self) -> Queue:
            """The app's queue."""

        registry: Registry

    _scheduler: Scheduler | None = None

    @property
    def scheduler(self) -> Scheduler:
        """The :class:`Scheduler` of this app (rebuilt when the driver changes)."""
        scheduler = self._scheduler
        if scheduler is None or scheduler.driver is not self.driver:
            scheduler = self._scheduler = Scheduler(
                self.driver, self._enqueue_scheduled, registry=self.registry
            )
        return scheduler

    def _enqueue_scheduled(self, messages: builtins.list[Message]) -> builtins.list[str | None]:
        return self.queue.enqueue(messages)

    def _schedulable(self, job: JobTarget) -> JobTarget:
        if not isinstance(job, str):
            self.registry.register(job)
        return job

    schedule_at = on_app_scheduler(Scheduler.schedule_at)
    schedule_in = on_app_scheduler(Scheduler.schedule_in)
    schedule_every = on_app_scheduler(Scheduler.schedule_every)
    schedule_daily = on_app_scheduler(Scheduler.schedule_daily)
    schedule_cron = on_app_scheduler(Scheduler.schedule_cron)

    def schedules(self) -> builtins.list[Schedule]:
        """Every stored schedule, by name."""
        return self.scheduler.list()

    def pause_schedule(self, name: str) -> None:
        """Stop firing schedule ``name`` until resumed (:class:`ScheduleNotFound` if unknown)."""
        self.scheduler.pause(name)

    def resume_schedule(self, name: str) -> None:
        """Fire schedule ``name`` again from its next tick."""
        self.scheduler.resume(name)

    def remove_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; ``False`` if there was none."""
        return self.scheduler.remove(name)

    def run_scheduler(self, stop_event: threading.Event | None = None, poll_interval: float = 1.0) -> None:
        """Fire this app's schedules in this thread until ``stop_event`` is set."""
        run_scheduler(self.scheduler, stop_event=stop_event, poll_interval=poll_interval)
