"""``Jobs``: the facade over one default :class:`~jobs_core.app.JobsApp`.

Every method is the default app's method of the same name::

    from jobs_core import Jobs

    Jobs.configure("sqlite:///jobs.db")
    Jobs.dispatch(SendEmail, {"to": "a@example.com"})
    Jobs.work("default", max_jobs=10)
    Jobs.stats()["completed"]
    Jobs.schedule_daily(SendReport, time="07:00", timezone="Europe/Berlin")

The default app is created on first use from ``$JOBS_URL`` (else
``memory://``). Programs that need several backends create
:class:`~jobs_core.app.JobsApp` objects instead.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from jobs_core import workflows
from jobs_core.app import JobsApp
from jobs_core.events import Callback
from jobs_core.job import Job, JobFunction, JobLike
from jobs_core.message import FailedJob
from jobs_core.schedule_data import Schedule
from jobs_core.workflows import Batch, Chain, Step, WorkflowStatus

_lock = threading.Lock()
_default: list[JobsApp] = []

P = ParamSpec("P")
R = TypeVar("R")


def on_default_app(method: Callable[Concatenate[JobsApp, P], R]) -> Callable[P, R]:
    """A facade function from an app method: the same call, on the default app."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(Jobs.app(), *args, **kwargs)

    call.__name__ = getattr(method, "__name__", "call")
    call.__qualname__ = f"Jobs.{call.__name__}"
    call.__doc__ = method.__doc__
    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())[1:]  # without the app
    call.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return call


class Jobs:
    """Static facade over the default app. Every method is a ``staticmethod``."""

    @staticmethod
    def app() -> JobsApp:
        """The default app, created from ``$JOBS_URL`` (else ``memory://``) on first use."""
        if not _default:
            with _lock:
                if not _default:
                    _default.append(JobsApp())
        return _default[0]

    @staticmethod
    def configure(url: str | dict[str, Any] | None = None, /, **options: Any) -> None:
        """Configure the default app: a URL (first, or as ``url=``), the dict form
        (``driver=..., ...``), or nothing for ``$JOBS_URL`` / ``memory://``.

        A URL given both first and as ``url=`` raises
        :class:`~jobs_core.errors.ConfigurationError`.

        Registered jobs and listeners are kept; the previous driver is closed.
        """
        with _lock:
            if not _default:
                _default.append(JobsApp(url, **options))
                return
        _default[0].configure(url, **options)

    @staticmethod
    def register(target: type[Job] | JobFunction | Job) -> type[Job]:
        """Register a job class or ``@job`` function with the default app."""
        return Jobs.app().register(target)

    @staticmethod
    def dispatch(
        job: JobLike,
        payload: Any = None,
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
        after: Sequence[str] | None = None,
    ) -> str | None:
        """Queue ``job`` with ``payload``; return the job id (``None`` for a unique duplicate).

        ``queue`` and ``delay`` override the job's settings, including the
        fluent overrides of a job instance. ``after`` lists batch, chain or job
        ids the job waits for (see :mod:`jobs_core.workflows`).
        """
        return Jobs.app().dispatch(job, payload, queue, delay, transaction=transaction, after=after)

    @staticmethod
    def dispatch_later(
        delay: float, job: JobLike, payload: Any = None, queue: str | None = None
    ) -> str | None:
        """Queue ``job`` to run ``delay`` seconds from now; return the job id."""
        return Jobs.app().dispatch_later(delay, job, payload, queue)

    @staticmethod
    def dispatch_many(
        job: JobLike,
        payloads: Iterable[Any],
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> list[str | None]:
        """Queue one ``job`` per payload in a single driver call; return the ids."""
        return Jobs.app().dispatch_many(job, payloads, queue, delay, transaction=transaction)

    @staticmethod
    async def adispatch(
        job: JobLike,
        payload: Any = None,
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> str | None:
        """``await``-able :meth:`dispatch` for async code: the event loop is not blocked.

        ``transaction`` may be a SQLAlchemy ``AsyncConnection`` or
        ``AsyncSession``: the job is stored in its open transaction.
        """
        return await Jobs.app().adispatch(job, payload, queue, delay, transaction=transaction)

    @staticmethod
    async def adispatch_many(
        job: JobLike,
        payloads: Iterable[Any],
        queue: str | None = None,
        delay: float | None = None,
        *,
        transaction: Any = None,
    ) -> list[str | None]:
        """``await``-able :meth:`dispatch_many` for async code (see :meth:`adispatch`)."""
        return await Jobs.app().adispatch_many(job, payloads, queue, delay, transaction=transaction)

    @staticmethod
    def work(queue: str | Sequence[str] = "default", max_jobs: int | None = None) -> int:
        """Run jobs in this thread until ``max_jobs`` were handled or none is due; return how many."""
        return Jobs.app().work(queue, max_jobs)

    @staticmethod
    def stats(queue: str | None = None) -> dict[str, int | None]:
        """``pending``, ``delayed``, ``reserved``, ``completed`` and ``failed`` counts."""
        return Jobs.app().stats(queue)

    @staticmethod
    def failed_jobs(limit: int = 50, offset: int = 0) -> list[FailedJob]:
        """Failed jobs, newest first (``id``, ``name``, ``queue``, ``payload``,
        ``attempts``, ``error``, ``failed_at``).
        """
        return Jobs.app().failed_jobs(limit, offset)

    @staticmethod
    def retry(job_id: str) -> bool:
        """Put a failed job back on its queue; whether it was found."""
        return Jobs.app().retry(job_id)

    @staticmethod
    def listen(event: str, callback: Callback) -> None:
        """Call ``callback(JobEvent)`` on ``event`` (``job.processed``, ...)."""
        Jobs.app().listen(event, callback)

    @staticmethod
    def register_plugin(plugin: object, name: str | None = None) -> None:
        """Register a plugin object (middleware, event hooks) with the default app."""
        Jobs.app().register_plugin(plugin, name)

    @staticmethod
    def pause_queue(name: str) -> bool:
        """Stop every worker from starting jobs of queue ``name``; whether it was running."""
        return Jobs.app().pause_queue(name)

    @staticmethod
    def resume_queue(name: str) -> bool:
        """Start jobs of queue ``name`` again; whether it was paused."""
        return Jobs.app().resume_queue(name)

    @staticmethod
    def paused_queues() -> list[str]:
        """The paused queues, sorted."""
        return Jobs.app().paused_queues()

    schedule_at = staticmethod(on_default_app(JobsApp.schedule_at))
    schedule_in = staticmethod(on_default_app(JobsApp.schedule_in))
    schedule_every = staticmethod(on_default_app(JobsApp.schedule_every))
    schedule_daily = staticmethod(on_default_app(JobsApp.schedule_daily))
    schedule_cron = staticmethod(on_default_app(JobsApp.schedule_cron))

    @staticmethod
    def schedules() -> list[Schedule]:
        """Every stored schedule, by name."""
        return Jobs.app().schedules()

    @staticmethod
    def pause_schedule(name: str) -> None:
        """Stop firing schedule ``name`` until it is resumed."""
        Jobs.app().pause_schedule(name)

    @staticmethod
    def resume_schedule(name: str) -> None:
        """Fire schedule ``name`` again from its next tick."""
        Jobs.app().resume_schedule(name)

    @staticmethod
    def remove_schedule(name: str) -> bool:
        """Delete schedule ``name``; ``False`` if there was none."""
        return Jobs.app().remove_schedule(name)

    status = staticmethod(on_default_app(JobsApp.status))
    result = staticmethod(on_default_app(JobsApp.result))
    cancel = staticmethod(on_default_app(JobsApp.cancel))
    astatus = staticmethod(on_default_app(JobsApp.astatus))
    aresult = staticmethod(on_default_app(JobsApp.aresult))
    acancel = staticmethod(on_default_app(JobsApp.acancel))
    jobs = staticmethod(on_default_app(JobsApp.jobs))
    workers = staticmethod(on_default_app(JobsApp.workers))
    # -- workflows (jobs_core.workflows) --------------------------------------

    @staticmethod
    def chain(steps: Sequence[Step]) -> Chain:
        """A chain of ``steps`` (jobs or ``(job, payload)`` pairs); ``.dispatch()`` stores it."""
        return Chain(Jobs.app(), steps)

    @staticmethod
    def batch(steps: Sequence[Step]) -> Batch:
        """A batch of ``steps``; add ``.then``/``.catch``/``.finally_``, then ``.dispatch()``."""
        return Batch(Jobs.app(), steps)

    @staticmethod
    def batch_status(batch_id: str) -> WorkflowStatus:
        """Counts and outcome of batch ``batch_id``."""
        return workflows.status(Jobs.app(), batch_id, "batch")

    @staticmethod
    def chain_status(chain_id: str) -> WorkflowStatus:
        """Position, counts and outcome of chain ``chain_id``."""
        return workflows.status(Jobs.app(), chain_id, "chain")

    @staticmethod
    def cancel_batch(batch_id: str) -> bool:
        """Cancel batch ``batch_id``: its waiting jobs are not run; ``False`` if it had ended."""
        return workflows.cancel_batch(Jobs.app(), batch_id)

    @staticmethod
    def cancel_chain(chain_id: str) -> bool:
        """Cancel chain ``chain_id``: no more links run (a running one finishes); ``False`` if it ended."""
        return workflows.cancel_chain(Jobs.app(), chain_id)

    @staticmethod
    def add_to_batch(steps: Sequence[Step], batch_id: str | None = None) -> list[str]:
        """Add ``steps`` to a running batch (inside its jobs, ``batch_id`` may be left out)."""
        return workflows.add_to_batch(Jobs.app(), steps, batch_id)


def set_default_app(app: JobsApp | None) -> JobsApp | None:
    """Replace the app behind :class:`Jobs` (``None``: make a fresh one on next use).

    Returns the previous default app, which is not closed. Tests use it, and
    so does ``jobs worker``, whose app is the default while it runs.
    """
    with _lock:
        previous = _default[0] if _default else None
        _default.clear()
        if app is not None:
            _default.append(app)
    return previous
