"""Job events: the public dotted names, their hooks, and how they are emitted.

Every event is a pluggy hook of :class:`~jobs_core.hookspecs.DriverSpec`, so
any plugin registered on an app can implement it. :meth:`JobsApp.listen
<jobs_core.app.JobsApp.listen>` is the simple door: it registers a callback,
which receives one :class:`JobEvent`.

========================  ======================  ==============================
event                     hook                    when
========================  ======================  ==============================
``job.queued``            ``jobs_job_queued``     after ``enqueue`` stored it
``job.processing``        ``jobs_job_processing`` before a worker runs it
``job.processed``         ``jobs_job_processed``  it succeeded and was acked
``job.failed``            ``jobs_job_failed``     an attempt raised or timed out
``job.retrying``          ``jobs_job_retrying``   it was put back to run again
``job.dead``              ``jobs_job_dead``       no attempts left, or unrunnable
========================  ======================  ==============================

An exception raised by an event hook or callback is logged and never affects
the job. The emitter calls the implementations itself, one by one, so a
broken one does not stop the others, and it skips an event entirely when no
plugin implements it (the worker's hot path pays nothing for unused events).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from jobs_core.errors import ConfigurationError
from jobs_core.hookspecs import hookimpl
from jobs_core.message import Message

log = logging.getLogger("jobs_core.events")

#: Hooks that are not events but that the emitter calls the same way (cached, errors logged).
CALLED_HOOKS = ("jobs_message_headers",)

#: Public event names, mapped to the hooks that carry them.
EVENTS: dict[str, str] = {
    "job.queued": "jobs_job_queued",
    "job.processing": "jobs_job_processing",
    "job.processed": "jobs_job_processed",
    "job.failed": "jobs_job_failed",
    "job.retrying": "jobs_job_retrying",
    "job.dead": "jobs_job_dead",
}


def hook_name(event: str) -> str:
    """The hook carrying ``event``; :class:`ConfigurationError` listing the valid names if unknown."""
    try:
        return EVENTS[event]
    except (KeyError, TypeError):
        raise ConfigurationError(f"unknown event {event!r}; valid events are: {', '.join(EVENTS)}") from None


@dataclass(frozen=True)
class JobEvent:
    """What a :meth:`~jobs_core.app.JobsApp.listen` callback receives.

    ``event`` is the dotted name. ``result`` and ``duration`` are set for
    ``job.processed``; ``error`` for ``job.failed``, ``job.retrying`` and
    ``job.dead`` (a string for jobs that could not be run at all);
    ``will_retry`` for ``job.failed``; ``delay`` for ``job.retrying``.
    """

    event: str
    message: Message
    result: Any = None
    duration: float | None = None
    error: BaseException | str | None = None
    will_retry: bool | None = None
    delay: float | None = None

    @property
    def job_id(self) -> str:
        """The message id."""
        return self.message.id

    @property
    def job_name(self) -> str:
        """The registered job name."""
        return self.message.name

    @property
    def queue(self) -> str:
        """The queue of the message."""
        return self.message.queue


Callback = Callable[[JobEvent], object]


class _Listener:
    """Base of the per-event plugins that hold :meth:`listen` callbacks."""

    event: str = ""

    def __init__(self) -> None:
        self.callbacks: list[Callback] = []

    def _call(self, payload: JobEvent) -> None:
        for callback in list(self.callbacks):
            try:
                callback(payload)
            except Exception:
                log.exception("callback %r for %s raised; the job is not affected", callback, self.event)


class _Queued(_Listener):
    event = "job.queued"

    @hookimpl
    def jobs_job_queued(self, message: Message) -> None:
        self._call(JobEvent(self.event, message))


class _Processing(_Listener):
    event = "job.processing"

    @hookimpl
    def jobs_job_processing(self, message: Message) -> None:
        self._call(JobEvent(self.event, message))


class _Processed(_Listener):
    event = "job.processed"

    @hookimpl
    def jobs_job_processed(self, message: Message, result: Any, duration: float) -> None:
        self._call(JobEvent(self.event, message, result=result, duration=duration))


class _Failed(_Listener):
    event = "job.failed"

    @hookimpl
    def jobs_job_failed(self, message: Message, error: BaseException, will_retry: bool) -> None:
        self._call(JobEvent(self.event, message, error=error, will_retry=will_retry))


class _Retrying(_Listener):
    event = "job.retrying"

    @hookimpl
    def jobs_job_retrying(self, message: Message, delay: float, error: BaseException) -> None:
        self._call(JobEvent(self.event, message, error=error, delay=delay))


class _Dead(_Listener):
    event = "job.dead"

    @hookimpl
    def jobs_job_dead(self, message: Message, error: BaseException | str) -> None:
        self._call(JobEvent(self.event, message, error=error))


_LISTENER_CLASSES: dict[str, type[_Listener]] = {
    cls.event: cls for cls in (_Queued, _Processing, _Processed, _Failed, _Retrying, _Dead)
}

_Impl = tuple[Callable[..., Any], tuple[str, ...]]


class EventEmitter:
    """Emits events to the hook implementations of one plugin manager.

    The list of implementations is cached; :meth:`refresh` re-reads it (the
    app calls it whenever it registers or unregisters a plugin, the worker
    once per reserved batch).
    """

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self._impls: dict[str, list[_Impl]] = {}
        self._listeners: dict[str, _Listener] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Re-read which plugins implement each event hook."""
        impls: dict[str, list[_Impl]] = {}
        for name in (*EVENTS.values(), *CALLED_HOOKS):
            hook = getattr(self.manager.hook, name)
            found = [
                (impl.function, tuple(impl.argnames))
                for impl in reversed(hook.get_hookimpls())
                if not (impl.wrapper or impl.hookwrapper)
            ]
            impls[name] = found
        self._impls = impls

    def listens(self, hook: str) -> bool:
        """Whether any plugin implements ``hook`` (a ``jobs_job_*`` name)."""
        return bool(self._impls.get(hook))

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook``; log, never raise, their errors."""
        for function, argnames in self._impls.get(hook, ()):
            try:
                function(**{arg: kwargs[arg] for arg in argnames})
            except Exception:
                log.exception("event hook %s of %r raised; the job is not affected", hook, function)

    def collect(self, hook: str, **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call every implementation of ``hook``; ``(function, result)`` for each result not ``None``.

        An implementation that raises is logged and left out.
        """
        results: list[tuple[Callable[..., Any], Any]] = []
        for function, argnames in self._impls.get(hook, ()):
            try:
                result = function(**{arg: kwargs[arg] for arg in argnames})
            except Exception:
                log.exception("hook %s of %r raised; its result is ignored", hook, function)
                continue
            if result is not None:
                results.append((function, result))
        return results

    def listen(self, event: str, callback: Callback) -> None:
        """Call ``callback(JobEvent)`` on every ``event`` (a dotted name)."""
        hook_name(event)
        if not callable(callback):
            raise ConfigurationError(f"callback for {event!r} must be callable, got {callback!r}")
        with self._lock:
            listener = self._listeners.get(event)
            if listener is None:
                listener = _LISTENER_CLASSES[event]()
                self.manager.register(listener, name=f"jobs-listen:{event}:{id(self)}")
                self._listeners[event] = listener
            listener.callbacks.append(callback)
        self.refresh()

    def unlisten(self, event: str, callback: Callback) -> bool:
        """Remove a callback added with :meth:`listen`; ``False`` if it was not there."""
        hook_name(event)
        with self._lock:
            listener = self._listeners.get(event)
            if listener is None or callback not in listener.callbacks:
                return False
            listener.callbacks.remove(callback)
            if not listener.callbacks:
                self.manager.unregister(listener)
                del self._listeners[event]
        self.refresh()
        return True
