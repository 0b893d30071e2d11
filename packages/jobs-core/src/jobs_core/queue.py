"""The :class:`Queue`: dispatch and administration on top of exactly one driver.

The queue turns already-built :class:`~jobs_core.message.Message` objects into
driver calls and fires ``job.queued`` for each message stored. Building
messages from jobs is the app's business (:mod:`jobs_core.app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jobs_core.driver import Capability, Driver
from jobs_core.errors import ConfigurationError
from jobs_core.events import EventEmitter
from jobs_core.message import FailedJob, Message, QueueStats, validate_queue_name

_QUEUED = "jobs_job_queued"
_HEADERS = "jobs_message_headers"

log = logging.getLogger("jobs_core.queue")


class Queue:
    """Dispatch, bulk dispatch, stats, failed jobs, retry, purge and prune for one driver."""

    def __init__(self, driver: Driver, events: EventEmitter | None = None) -> None:
        self.driver = driver
        self.events = events

    # -- dispatch -----------------------------------------------------------

    def enqueue(self, messages: Sequence[Message], *, transaction: Any = None) -> list[str | None]:
        """Store ``messages`` in one driver call; fire ``job.queued`` for each stored.

        Returns, per message, its id or ``None`` when it was dropped as a
        duplicate of an unfinished job with the same unique key. With
        ``transaction``, the messages join the caller's transaction
        (:meth:`Driver.enqueue_in <jobs_core.driver.Driver.enqueue_in>`).
        """
        if not messages:
            return []
        events = self.events
        if events is not None and events.listens(_HEADERS):
            messages = [self._with_plugin_headers(events, message) for message in messages]
        if transaction is None:
            ids = self.driver.enqueue(messages)
        else:
            ids = self.driver.enqueue_in(transaction, messages)
        if events is not None and events.listens(_QUEUED):
            for message, ident in zip(messages, ids, strict=True):
                if ident is not None:
                    events.emit(_QUEUED, message=message, driver=self.driver)
        return ids

    def _with_plugin_headers(self, events: EventEmitter, message: Message) -> Message:
        """``message`` with the headers ``jobs_message_headers`` implementations add (its own win)."""
        added: dict[str, str] = {}
        for function, result in events.collect(_HEADERS, message=message, driver=self.driver):
            if not isinstance(result, Mapping) or not all(
                type(k) is str and type(v) is str for k, v in result.items()
            ):
                log.error(
                    "jobs_message_headers of %r returned %r, not a mapping of strings to strings",
                    function,
                    result,
                )
                continue
            added.update(result)
        if not added:
            return message
        return message.replace(headers={**added, **message.headers})

    # -- inspection ---------------------------------------------------------

    def stats(self, queue: str | None = None) -> QueueStats:
        """Counts for ``queue``, or over every queue."""
        if queue is not None:
            validate_queue_name(queue)
        return self.driver.stats(queue)

    def queues(self) -> list[str]:
        """Names of the queues the driver knows."""
        return self.driver.queues()

    def stats_by_queue(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts per queue (default: every queue the driver knows), as one snapshot where possible."""
        for name in queues or ():
            validate_queue_name(name)
        return self.driver.stats_by_queue(None if queues is None else list(queues))

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first."""
        if limit < 0 or offset < 0:
            raise ConfigurationError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")
        return self.driver.failed(limit=limit, offset=offset, queue=queue)

    # -- administration -----------------------------------------------------

    def retry(self, failed_id: str) -> bool:
        """Put one failed job back on its queue; ``False`` if there is no such failed job."""
        return self.driver.retry_failed(failed_id)

    def retry_all(
        self,
        queue: str | None = None,
        progress: Callable[[int], None] | None = None,
        page: int = 500,
    ) -> int:
        """Put every failed job (of ``queue``, if given) back; return how many.

        ``progress(count)`` is called after each page.
        """
        self.driver.require(Capability.RETRY_FAILED, "retrying failed jobs")
        done = 0
        while True:
            batch = self.driver.failed(limit=page, offset=0, queue=queue)
            if not batch:
                return done
            moved = sum(1 for entry in batch if self.driver.retry_failed(entry.id))
            done += moved
            if progress is not None:
                progress(done)
            if moved == 0:
                return done

    def forget(self, failed_id: str) -> bool:
        """Delete one failed job; ``False`` if there was none."""
        return self.driver.forget_failed(failed_id)

    def purge(self, queue: str) -> int:
        """Remove the waiting messages of ``queue``; return how many."""
        return self.driver.purge(validate_queue_name(queue))

    def prune(self, older_than: float) -> int:
        """Remove finished and failed records older than ``older_than`` seconds; return how many."""
        if older_than < 0:
            raise ConfigurationError(f"older_than must be >= 0 seconds, got {older_than!r}")
        return self.driver.prune(older_than)
