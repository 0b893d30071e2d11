"""Jobs: the unit of work, its defaults and its per-dispatch overrides.

Subclass :class:`Job` and implement ``handle(self, payload)`` (sync or
``async def``), or decorate a function with :func:`job`. Class attributes are
the defaults; the fluent methods override them for one dispatch and return
the job, so calls chain::

    SendEmail().on_queue("urgent").retries(5).retry_after(60).timeout(120)

Over 400 lines: the class, the fluent overrides, the ``@job`` decorator and
the function-job wrapper are one API, read together.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import inspect
import operator
import sys
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar, overload

from jobs_core import options
from jobs_core.context import is_cancelled, job_context, report_progress
from jobs_core.errors import ConfigurationError, JobCancelled, JobNotDispatchedWarning
from jobs_core.flow import (
    ConcurrencyLimit,
    FlowOptions,
    RateLimit,
    check_expiry,
    check_tenant,
    flow_headers,
)
from jobs_core.message import Backoff, Message, MessageBatch, new_id, retry_policy
from jobs_core.serializer import check_each, check_json

_UNSET: Any = object()


class Job:
    """Base class of jobs.

    Class-level defaults (override them in a subclass):

    ``job_name``
        Stable name used in messages; defaults to ``module.QualName``.
    ``queue``
        Queue to dispatch to (``"default"``).
    ``max_retries``
        Retries after the first failed attempt (``3``).
    ``retry_delay``, ``backoff``, ``max_retry_delay``, ``jitter``
        Wait before a retry: ``retry_delay`` seconds, doubled per attempt when
        ``backoff="exponential"``, capped at ``max_retry_delay``, randomised
        within its upper half when ``jitter`` is true.
    ``time_limit``
        Seconds a run may take before it is stopped (``None``: no limit).
    ``default_priority``
        Higher runs first (``0``).
    ``default_rate_limit``, ``default_concurrency_limit``
        A :class:`~jobs_core.flow.RateLimit` or
        :class:`~jobs_core.flow.ConcurrencyLimit` for every dispatch (``None``).
    ``default_tenant``, ``expires_after``
        A tenant key (or function of the payload), and seconds after which an
        unstarted job expires (``None``).

    Every value is checked when the class is defined (and again at each
    dispatch, in case an attribute was changed since): a value outside
    :mod:`jobs_core.limits` raises :class:`~jobs_core.errors.ConfigurationError`
    naming the attribute and the values it allows.
    """

    job_name: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    max_retries: ClassVar[int] = 3
    retry_delay: ClassVar[float] = 1.0
    backoff: ClassVar[Backoff] = "exponential"
    max_retry_delay: ClassVar[float] = 3600.0
    jitter: ClassVar[bool] = True
    time_limit: ClassVar[float | None] = None
    default_priority: ClassVar[int] = 0
    default_rate_limit: ClassVar[RateLimit | None] = None
    default_concurrency_limit: ClassVar[ConcurrencyLimit | None] = None
    default_tenant: ClassVar[str | Callable[[Any], str] | None] = None
    expires_after: ClassVar[float | None] = None

    def __init__(self) -> None:
        self._overrides: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "job_name" not in cls.__dict__:
            cls.job_name = f"{cls.__module__}.{cls.__qualname__}"
        for attribute in _FLUENT_METHODS:
            if attribute in cls.__dict__ and not callable(cls.__dict__[attribute]):
                raise ConfigurationError(
                    f"{cls.__qualname__}.{attribute} shadows the fluent method "
                    f"Job.{attribute}(); use the class default named in the Job docstring"
                )
        _class_settings(cls)

    def handle(self, payload: Any) -> Any:
        """Do the work. Override; may be ``async def``."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement handle(payload)")

    # -- the run ------------------------------------------------------------

    @property
    def job_id(self) -> str:
        """The id of the job being run: what dispatch returned, the same on every
        retry and redelivery (an idempotency key). Known while a worker runs the
        job; :class:`~jobs_core.errors.NoCurrentJob` otherwise.
        """
        return job_context(self).id

    @property
    def attempt(self) -> int:
        """1 on the job's first run, 2 on its first retry, and so on (while a worker runs it)."""
        return job_context(self).attempt

    def progress(self, done: float, total: float | None = None, note: str = "") -> None:
        """Report how far the running job got: ``done`` of ``total`` (``None``: unknown), and a note.

        Shown by ``Jobs.status`` and ``jobs status`` while the job runs. Cheap
        enough to call in a tight loop: the worker keeps the latest report and
        writes it at most twice a second. Does nothing outside a worker, or
        when the driver lacks ``Capability.PROGRESS`` (or in the child process
        of a sync job with a timeout). A bad value raises
        :class:`~jobs_core.errors.ConfigurationError`.
        """
        report_progress(done, total, note, job=self)

    @property
    def cancelled(self) -> bool:
        """Whether ``Jobs.cancel`` asked to stop this run (seen within about a second).

        A long sync job checks it between steps and returns, or calls
        :meth:`check_cancelled`; either way the job ends as cancelled.
        """
        return is_cancelled(self)

    def check_cancelled(self) -> None:
        """Raise :class:`~jobs_core.errors.JobCancelled` if the job was cancelled (see :attr:`cancelled`)."""
        if is_cancelled(self):
            raise JobCancelled(f"job {job_context(self).id} was cancelled")

    # -- fluent overrides ---------------------------------------------------

    def on_queue(self, name: str) -> Job:
        """Dispatch to queue ``name``."""
        self._overrides["queue"] = options.queue("on_queue()", name)
        return self

    def retries(self, count: int) -> Job:
        """Allow ``count`` retries after the first failed attempt (0 to ``MAX_RETRIES``)."""
        self._overrides["max_retries"] = options.retries("retries()", count)
        return self

    def retry_after(self, seconds: float, backoff: Backoff | None = None) -> Job:
        """Wait ``seconds`` before retrying (optionally setting the backoff,
        ``"fixed"`` or ``"exponential"``).
        """
        delay = options.seconds("retry_after() seconds", seconds)
        if backoff is not None:
            self._overrides["backoff"] = options.backoff("retry_after() backoff", backoff)
        self._overrides["retry_delay"] = delay
        return self

    def timeout(self, seconds: float | None) -> Job:
        """Stop a run after ``seconds`` (above 0; ``None``: no limit)."""
        self._overrides["time_limit"] = options.timeout("timeout()", seconds)
        return self

    def delay(self, seconds: float) -> Job:
        """Make the job available ``seconds`` after dispatch.

        This configures a dispatch; it queues nothing (unlike Celery's
        ``task.delay``): ``Jobs.dispatch(send_email.delay(60), payload)``. A
        job configured this way and dropped without being dispatched raises
        a :class:`~jobs_core.errors.JobNotDispatchedWarning` when it is
        garbage collected.
        """
        self._overrides["delay"] = options.seconds("delay()", seconds)
        _watch_for_dispatch(self, f"delay({seconds!r})")
        return self

    def priority(self, level: int) -> Job:
        """Run before jobs of lower ``level`` on the same queue (a 32-bit signed int)."""
        self._overrides["priority"] = options.priority("priority()", level)
        return self

    def unique(self, key: str, ttl: float | None = None) -> Job:
        """Drop this dispatch while another job with ``key`` is unfinished
        (for at most ``ttl`` seconds when given).
        """
        checked_key = options.unique_key("unique() key", key)
        checked_ttl = options.unique_ttl("unique() ttl", ttl)
        self._overrides["unique_key"] = checked_key
        self._overrides["unique_ttl"] = checked_ttl
        return self

    def key(self, key: str, concurrency: int = 1) -> Job:
        """Order this job after the earlier jobs of ``key`` (an entity: ``"customer-42"``).

        On a driver with :attr:`~jobs_core.driver.Capability.ORDERED_KEYS`,
        the jobs of one key start in the order they were dispatched, at most
        ``concurrency`` of them running at once (give every job of a key the
        same value). On Kafka the key is the record key, so it picks the
        partition. Other drivers store the key and do not order by it.
        """
        checked_key = options.ordering_key("key()", key)
        checked_concurrency = options.key_concurrency("key() concurrency", concurrency)
        self._overrides["key"] = checked_key
        self._overrides["key_concurrency"] = checked_concurrency
        return self

    # -- flow control (jobs_core.flow) ----------------------------------------

    def rate_limit(self, count: int, per: float = 1.0, key: str | Callable[[Any], str] | None = None) -> Job:
        """Start at most ``count`` jobs of ``key`` per ``per`` seconds, across every worker.

        ``key`` is a string (``"api"``), a function of the payload returning
        one (``lambda p: p["host"]``), or ``None``: one limit for this job.
        A job over the limit is not started and not counted as an attempt:
        it goes back to its queue, due when the window has room again. Needs
        a driver with :attr:`~jobs_core.driver.Capability.RATE_LIMITS`.
        """
        self._overrides["rate_limit"] = RateLimit(count, per, key)
        return self

    def concurrency_limit(self, count: int, key: str | Callable[[Any], str] | None = None) -> Job:
        """Run at most ``count`` jobs of ``key`` at once, across every worker (1: never overlapping).

        ``key`` as for :meth:`rate_limit`. A slot is held under the worker's
        lease, so a crashed worker's slot frees itself when the lease ends.
        Needs a driver with :attr:`~jobs_core.driver.Capability.CONCURRENCY_LIMITS`.
        """
        self._overrides["concurrency_limit"] = ConcurrencyLimit(count, key)
        return self

    def tenant(self, key: str | Callable[[Any], str]) -> Job:
        """Mark the job as ``key``'s (a string or a function of the payload), for fair scheduling."""
        self._overrides["tenant"] = check_tenant(key)
        return self

    def expires(self, when: float | dt.datetime) -> Job:
        """Drop the job unrun if it has not started ``when`` seconds after dispatch (or at datetime ``when``).

        An expired job is acknowledged without running and counted in the
        worker's ``expired`` count.
        """
        self._overrides["expires"] = check_expiry(when)
        return self

    # legacy setters --------------------------------------------------------

    def set_max_retries(self, count: int) -> Job:
        """Legacy spelling of :meth:`retries`."""
        return self.retries(count)

    def set_retry_delay(self, seconds: float) -> Job:
        """Legacy spelling of :meth:`retry_after`."""
        return self.retry_after(seconds)

    def set_timeout(self, seconds: float | None) -> Job:
        """Legacy spelling of :meth:`timeout`."""
        return self.timeout(seconds)

    # -- building messages --------------------------------------------------

    def option(self, key: str) -> Any:
        """The effective value of one setting: the override, else the class default."""
        if key in self._overrides:
            return self._overrides[key]
        if key in ("delay", "unique_key", "unique_ttl", "key"):
            return None
        if key in _FLOW_OPTIONS:
            return getattr(type(self), _FLOW_OPTIONS[key], None)
        if key == "key_concurrency":
            return 1
        if key == "priority":
            return self.default_priority
        return getattr(type(self), key)

    def to_message(
        self,
        payload: Any = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        headers: dict[str, str] | None = None,
        now: float | None = None,
    ) -> Message:
        """Build the message for one dispatch of this job.

        Raises :class:`~jobs_core.errors.PayloadNotJSON` for a payload JSON
        cannot hold, naming the path and type of the offending value.
        """
        return self.to_messages((payload,), queue=queue, delay=delay, headers=headers, now=now)[0]

    def to_messages(
        self,
        payloads: Iterable[Any],
        *,
        queue: str | None = None,
        delay: float | None = None,
        headers: dict[str, str] | None = None,
        now: float | None = None,
    ) -> Sequence[Message]:
        """Build one message per payload, sharing this job's settings (bulk dispatch).

        Every payload is checked before any message is returned. A large batch
        comes as a :class:`~jobs_core.message.MessageBatch`, whose messages are
        built as they are first read.
        """
        _dispatched(self)
        now = time.time() if now is None else now
        settings = _class_settings(type(self))
        overrides = self._overrides
        if overrides:
            settings = {**settings, **overrides}
        wait = options.seconds("delay", delay) if delay is not None else settings.get("delay")
        common = {
            "name": settings["job_name"],
            "queue": options.queue("queue", queue) if queue is not None else settings["queue"],
            "attempts": 0,
            "max_retries": settings["max_retries"],
            "retry": retry_policy(
                settings["backoff"], settings["retry_delay"], settings["max_retry_delay"], settings["jitter"]
            ),
            "timeout": settings["time_limit"],
            "priority": settings["priority"],
            "available_at": now + (wait or 0.0),
            "created_at": now,
            "unique_key": settings.get("unique_key"),
            "unique_ttl": settings.get("unique_ttl"),
            "last_error": None,
            "key": settings.get("key"),
            "key_concurrency": settings.get("key_concurrency", 1),
        }
        if headers:
            headers = options.headers("headers", headers)
            check_json(headers, "$.headers")
        common["headers"] = dict(headers) if headers else {}
        payloads = list(payloads)
        check_each(payloads)
        flow = self._flow_options()
        if not flow.empty:
            if flow.per_payload:
                return [
                    Message.build(
                        {
                            **common,
                            "id": new_id(),
                            "payload": payload,
                            "headers": {
                                **common["headers"],
                                **flow_headers(flow, payload, settings["job_name"], now),
                            },
                        }
                    )
                    for payload in payloads
                ]
            common["headers"].update(flow_headers(flow, None, settings["job_name"], now))
        if len(payloads) == 1:  # one dispatch: nothing to share, encode when stored
            return [Message.build({**common, "id": new_id(), "payload": payloads[0]})]
        if len(payloads) <= MessageBatch.CHUNK:
            return Message.build_many(common, payloads)
        return MessageBatch(common, payloads)

    def _flow_options(self) -> FlowOptions:
        """The flow-control settings of this dispatch: overrides, else class defaults."""
        values = {name: self.option(name) for name in _FLOW_OPTIONS}
        if all(value is None for value in values.values()):
            return _NO_FLOW
        return FlowOptions(**values)

    def __copy__(self) -> Job:
        _dispatched(self)  # copied to make a dispatch (or a schedule) from it
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._overrides = dict(self._overrides)
        clone.__dict__.pop("_jobs_message", None)  # a copy is not the job being run
        return clone

    def __repr__(self) -> str:
        extra = "".join(f" {k}={v!r}" for k, v in sorted(self._overrides.items()))
        return f"<{type(self).__qualname__} {type(self).job_name!r}{extra}>"


_WATCH = "_jobs_not_dispatched"


def _watch_for_dispatch(job: Job, call: str) -> None:
    """Warn when ``job`` is garbage collected without having been dispatched."""
    if _WATCH not in job.__dict__:
        finalizer = weakref.finalize(job, _never_dispatched, type(job).__qualname__, call)
        finalizer.atexit = False
        job.__dict__[_WATCH] = finalizer


def _dispatched(job: Job) -> None:
    finalizer = job.__dict__.pop(_WATCH, None)
    if finalizer is not None:
        finalizer.detach()


def _never_dispatched(name: str, call: str) -> None:
    if sys.is_finalizing():
        return
    warnings.warn(
        f"{name}.{call} configured a job that was never dispatched: delay() sets the delay of a "
        f"dispatch and queues nothing; use Jobs.dispatch(job.{call}, payload) or "
        "Jobs.dispatch_later(seconds, job, payload)",
        JobNotDispatchedWarning,
        stacklevel=3,
    )


_FLUENT_METHODS = (
    "on_queue",
    "retries",
    "retry_after",
    "timeout",
    "delay",
    "priority",
    "unique",
    "key",
    "rate_limit",
    "concurrency_limit",
    "tenant",
    "expires",
    "set_max_retries",
    "set_retry_delay",
    "set_timeout",
    "handle",
)


#: The class attributes of a job and the validator of each.
_CLASS_OPTIONS: tuple[tuple[str, Callable[[str, Any], Any]], ...] = (
    ("job_name", options.job_name),
    ("queue", options.queue),
    ("max_retries", options.retries),
    ("retry_delay", options.seconds),
    ("backoff", options.backoff),
    ("max_retry_delay", options.seconds),
    ("jitter", options.jitter),
    ("time_limit", options.timeout),
    ("default_priority", options.priority),
)


_ATTRIBUTES = operator.attrgetter(*(attribute for attribute, _ in _CLASS_OPTIONS))

#: Per job class: its attribute values when last checked, and the settings they gave.
_CHECKED: weakref.WeakKeyDictionary[type[Job], tuple[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _class_settings(cls: type[Job]) -> dict[str, Any]:
    """The validated class defaults of ``cls``, keyed as the job's overrides are (read only).

    Called at every dispatch, since a class attribute may have been changed
    after the class was defined: the values are checked again whenever one of
    them is not the very object checked last time.
    """
    values = _ATTRIBUTES(cls)
    known = _CHECKED.get(cls)
    if known is not None and all(map(operator.is_, values, known[0])):
        return known[1]
    settings: dict[str, Any] = {}
    for (attribute, check), value in zip(_CLASS_OPTIONS, values, strict=True):
        settings[attribute] = check(f"{cls.__qualname__}.{attribute}", value)
    settings["priority"] = settings.pop("default_priority")
    _CHECKED[cls] = (values, settings)
    return settings


#: Flow-control options and the class attribute holding each one's default.
_FLOW_OPTIONS = {
    "rate_limit": "default_rate_limit",
    "concurrency_limit": "default_concurrency_limit",
    "tenant": "default_tenant",
    "expires": "expires_after",
}
_NO_FLOW = FlowOptions()


F = TypeVar("F", bound=Callable[..., Any])


class FunctionJob(Job):
    """A job made from a function by :func:`job`; ``handle`` calls the function."""

    function: ClassVar[Callable[[Any], Any]]

    def handle(self, payload: Any) -> Any:
        """Call the wrapped function with the payload."""
        return type(self).function(payload)


class JobFunction:
    """What :func:`job` returns: the function, still callable directly, plus
    the job class and the fluent methods (each starts a fresh job instance).
    """

    def __init__(self, job_class: type[FunctionJob]) -> None:
        self.job_class = job_class
        functools.update_wrapper(self, job_class.function)

    @property
    def job_name(self) -> str:
        """The registered name of the job."""
        return self.job_class.job_name

    @property
    def is_async(self) -> bool:
        """Whether the function is ``async def``."""
        return inspect.iscoroutinefunction(self.job_class.function)

    def __call__(self, payload: Any = None) -> Any:
        """Call the function directly, in this process."""
        return self.job_class.function(payload)

    def new(self) -> FunctionJob:
        """A new job instance with the decorator's defaults."""
        return self.job_class()

    def on_queue(self, name: str) -> Job:
        """A new job instance dispatched to ``name``."""
        return self.new().on_queue(name)

    def retries(self, count: int) -> Job:
        """A new job instance with ``count`` retries."""
        return self.new().retries(count)

    def retry_after(self, seconds: float, backoff: Backoff | None = None) -> Job:
        """A new job instance retrying after ``seconds``."""
        return self.new().retry_after(seconds, backoff)

    def timeout(self, seconds: float | None) -> Job:
        """A new job instance with a time limit."""
        return self.new().timeout(seconds)

    def delay(self, seconds: float) -> Job:
        """A new job instance delayed by ``seconds``."""
        return self.new().delay(seconds)

    def priority(self, level: int) -> Job:
        """A new job instance with priority ``level``."""
        return self.new().priority(level)

    def unique(self, key: str, ttl: float | None = None) -> Job:
        """A new job instance with a unique key."""
        return self.new().unique(key, ttl)

    def key(self, key: str, concurrency: int = 1) -> Job:
        """A new job instance with an ordering key (see :meth:`Job.key`)."""
        return self.new().key(key, concurrency)

    def rate_limit(self, count: int, per: float = 1.0, key: str | Callable[[Any], str] | None = None) -> Job:
        """A new job instance with a rate limit (see :meth:`Job.rate_limit`)."""
        return self.new().rate_limit(count, per, key)

    def concurrency_limit(self, count: int, key: str | Callable[[Any], str] | None = None) -> Job:
        """A new job instance with a concurrency limit (see :meth:`Job.concurrency_limit`)."""
        return self.new().concurrency_limit(count, key)

    def tenant(self, key: str | Callable[[Any], str]) -> Job:
        """A new job instance of tenant ``key`` (see :meth:`Job.tenant`)."""
        return self.new().tenant(key)

    def expires(self, when: float | dt.datetime) -> Job:
        """A new job instance that expires (see :meth:`Job.expires`)."""
        return self.new().expires(when)

    def __repr__(self) -> str:
        return f"<job {self.job_name!r}>"


@overload
def job(function: Callable[[Any], Any], /) -> JobFunction: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str = "default",
    max_retries: int = 3,
    retry_delay: float = 1.0,
    backoff: Backoff = "exponential",
    max_retry_delay: float = 3600.0,
    jitter: bool = True,
    timeout: float | None = None,
    priority: int = 0,
) -> Callable[[Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]], JobFunction]: ...


def job(
    function: Callable[[Any], Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    max_retries: int = 3,
    retry_delay: float = 1.0,
    backoff: Backoff = "exponential",
    max_retry_delay: float = 3600.0,
    jitter: bool = True,
    timeout: float | None = None,
    priority: int = 0,
) -> Any:
    """Turn a function taking one payload argument into a job.

    Example::

        @job(queue="emails", max_retries=5)
        def send_email(payload):
            ...

        Jobs.dispatch(send_email, {"to": "a@example.com"})

    The function stays callable directly. ``async def`` functions run on the
    worker's event loop. Every option is checked here, at decoration: a value
    outside :mod:`jobs_core.limits` raises
    :class:`~jobs_core.errors.ConfigurationError` naming the option.
    """
    # Checked once, at decoration, under the names the decorator takes.
    checked: dict[str, Any] = {
        "queue": options.queue("@job(queue=...)", queue),
        "max_retries": options.retries("@job(max_retries=...)", max_retries),
        "retry_delay": options.seconds("@job(retry_delay=...)", retry_delay),
        "backoff": options.backoff("@job(backoff=...)", backoff),
        "max_retry_delay": options.seconds("@job(max_retry_delay=...)", max_retry_delay),
        "jitter": options.jitter("@job(jitter=...)", jitter),
        "time_limit": options.timeout("@job(timeout=...)", timeout),
        "default_priority": options.priority("@job(priority=...)", priority),
    }
    if name is not None:
        options.job_name("@job(name=...)", name)

    def decorate(func: Callable[[Any], Any]) -> JobFunction:
        attrs: dict[str, Any] = {
            "function": staticmethod(func),
            "job_name": name or f"{func.__module__}.{func.__qualname__}",
            **checked,
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
        }
        if inspect.iscoroutinefunction(func):

            async def handle(self: FunctionJob, payload: Any) -> Any:
                return await func(payload)

            attrs["handle"] = handle
        cls = type(func.__name__, (FunctionJob,), attrs)
        return JobFunction(cls)

    if function is not None:
        return decorate(function)
    return decorate


JobLike = type[Job] | Job | JobFunction | str
"""What dispatch accepts: a Job class, a configured instance, a decorated
function, or a registered job name."""


def job_instance(target: type[Job] | Job | JobFunction) -> Job:
    """A job instance for ``target`` (a copy when it is already an instance)."""
    if isinstance(target, JobFunction):
        return target.new()
    if isinstance(target, Job):
        return copy.copy(target)
    if isinstance(target, type) and issubclass(target, Job):
        return target()
    raise ConfigurationError(f"not a job: {target!r}")
