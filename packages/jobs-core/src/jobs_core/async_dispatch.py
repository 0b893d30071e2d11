"""Storing jobs from ``async`` code: in a worker thread, or in an async SQLAlchemy transaction.

:meth:`JobsApp.adispatch <jobs_core.app.JobsApp.adispatch>` and its batch
form store through :func:`enqueue_async`. An ``AsyncConnection`` or
``AsyncSession`` is recognised by its ``run_sync`` coroutine method, and the
job is stored in that object's open transaction; a sync dispatch given one is
refused with a :class:`~jobs_core.errors.ConfigurationError` saying to await
the async form.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from jobs_core.errors import ConfigurationError

if TYPE_CHECKING:
    from jobs_core.message import Message
    from jobs_core.queue import Queue

__all__ = ["async_run_sync", "enqueue_async", "refuse_async_transaction"]


def async_run_sync(transaction: Any) -> Callable[[Callable[[Any], Any]], Awaitable[Any]] | None:
    """The ``run_sync`` coroutine method of an async transaction object (SQLAlchemy's
    ``AsyncConnection`` and ``AsyncSession``), or ``None`` for anything else.
    """
    run_sync = getattr(transaction, "run_sync", None)
    if run_sync is not None and inspect.iscoroutinefunction(run_sync):
        return cast("Callable[[Callable[[Any], Any]], Awaitable[Any]]", run_sync)
    return None


def refuse_async_transaction(transaction: Any, method: str) -> None:
    """Raise :class:`ConfigurationError` for an async transaction given to a sync dispatch."""
    if transaction is not None and async_run_sync(transaction) is not None:
        raise ConfigurationError(
            f"{method}(transaction=...) got an async {type(transaction).__name__}, whose statements "
            f"run on the event loop: use 'await Jobs.a{method}(..., transaction=...)' in async code"
        )


async def enqueue_async(queue: Queue, messages: Sequence[Message], transaction: Any) -> list[str | None]:
    """Store ``messages`` through ``queue`` without blocking the event loop.

    Without ``transaction`` in a worker thread; in an async SQLAlchemy
    transaction through its ``run_sync``; a sync transaction object is used
    as a sync dispatch uses it.
    """
    if transaction is None:
        return await asyncio.to_thread(queue.enqueue, messages)
    run_sync = async_run_sync(transaction)
    if run_sync is None:
        return queue.enqueue(messages, transaction=transaction)
    result: list[str | None] = await run_sync(
        lambda sync_transaction: queue.enqueue(messages, transaction=sync_transaction)
    )
    return result
