"""What a driver hands out and keeps besides the message itself.

:class:`Delivery` is a message leased to one worker; :class:`FailedJob` is an
entry of the failed store. Both are importable from :mod:`jobs_core.message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs_core.message import Message

__all__ = ["Delivery", "FailedJob"]


@dataclass(frozen=True)
class Delivery:
    """A message leased to one worker.

    ``receipt`` identifies this lease: an ack, retry or extend with a receipt
    whose lease has since ended and been given to another worker is ignored.
    ``handle`` is private to the driver (a row id, a partition and offset).
    """

    message: Message
    receipt: str
    lease_expires_at: float
    handle: Any = None
    #: The job's return value, set by the worker on a delivery it acknowledges
    #: when the message asks for it (a chain link, ``WORKFLOWS``); else ``None``.
    result: Any = None

    @property
    def id(self) -> str:
        """The message id."""
        return self.message.id

    @property
    def queue(self) -> str:
        """The queue the message was reserved from."""
        return self.message.queue


@dataclass(frozen=True)
class FailedJob:
    """An entry of the failed store: a job that used up its attempts, or a
    record the worker could not run (unknown name, malformed body).
    """

    id: str
    name: str
    queue: str
    payload: Any
    attempts: int
    error: str
    failed_at: float
    message: Message | None = None
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the nested message)."""
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "payload": self.payload,
            "attempts": self.attempts,
            "error": self.error,
            "failed_at": self.failed_at,
        }
