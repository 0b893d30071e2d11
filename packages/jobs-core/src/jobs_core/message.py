"""What travels between a dispatcher, a driver and a worker.

:class:`Message` is the job as the backend stores it; :class:`Delivery` is a
message leased to one worker; :class:`FailedJob` is an entry of the failed
store; :class:`QueueStats` is what ``stats`` reports. All are plain data and
encode to JSON.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jobs_core import serializer
from jobs_core.errors import InvalidName, MalformedMessage

#: Version of the JSON envelope written by :meth:`Message.encode`.
ENVELOPE_VERSION = 1

QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""Queue names: 1 to 100 characters of ``A-Z a-z 0-9 . _ -``, starting with a
letter or digit. Safe as a SQL value, a Kafka topic suffix and a file name."""

Backoff = Literal["fixed", "exponential"]


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not QUEUE_NAME_PATTERN.match(name):
        raise InvalidName(
            f"invalid queue name {name!r}: use 1-100 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def new_id() -> str:
    """A new message id: 32 hex characters, time-ordered (UUIDv7 layout)."""
    millis = time.time_ns() // 1_000_000
    rand = random.getrandbits(74)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value).hex


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before each retry.

    ``fixed`` waits ``delay`` seconds every time; ``exponential`` waits
    ``delay * 2 ** (attempt - 1)``, capped at ``max_delay``. With ``jitter``
    the wait is drawn uniformly from its upper half, so that a burst of
    failures does not retry in lockstep.
    """

    backoff: Backoff = "exponential"
    delay: float = 1.0
    max_delay: float = 3600.0
    jitter: bool = True

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based)."""
        base = self.delay
        if self.backoff == "exponential":
            base = self.delay * (2 ** max(0, min(attempt - 1, 62)))
        base = min(base, self.max_delay)
        if self.jitter and base > 0:
            base = random.uniform(base / 2, base)
        return max(0.0, base)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Inverse of :meth:`to_dict`; raises :class:`MalformedMessage` on bad data."""
        try:
            backoff = data.get("backoff", "exponential")
            if backoff not in ("fixed", "exponential"):
                raise ValueError(f"unknown backoff {backoff!r}")
            return cls(
                backoff=backoff,
                delay=float(data.get("delay", 1.0)),
                max_delay=float(data.get("max_delay", 3600.0)),
                jitter=bool(data.get("jitter", True)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise MalformedMessage(f"invalid retry policy: {exc}") from exc


@dataclass(frozen=True)
class Message:
    """One job as stored by a driver.

    ``attempts`` counts attempts that failed (incremented by ``retry`` and
    ``fail``); the worker gives up once it exceeds ``max_retries``.
    ``priority``: higher runs first. Times are Unix timestamps in seconds.
    """

    name: str
    payload: Any = None
    queue: str = "default"
    id: str = field(default_factory=new_id)
    attempts: int = 0
    max_retries: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    priority: int = 0
    available_at: float = field(default_factory=time.time)
    created_at: float = field(default_factory=time.time)
    unique_key: str | None = None
    unique_ttl: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    last_error: str | None = None

    def replace(self, **changes: Any) -> Message:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON envelope (a dict of plain JSON values)."""
        return {
            "v": ENVELOPE_VERSION,
            "id": self.id,
            "name": self.name,
            "payload": self.payload,
            "queue": self.queue,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "retry": self.retry.to_dict(),
            "timeout": self.timeout,
            "priority": self.priority,
            "available_at": self.available_at,
            "created_at": self.created_at,
            "unique_key": self.unique_key,
            "unique_ttl": self.unique_ttl,
            "headers": dict(self.headers),
            "last_error": self.last_error,
        }

    def encode(self) -> bytes:
        """The message as UTF-8 JSON bytes."""
        return serializer.dumps(self.to_dict()).encode()

    @classmethod
    def from_dict(cls, data: object) -> Message:
        """Build a message from its envelope; :class:`MalformedMessage` names what is wrong."""
        if not isinstance(data, dict):
            raise MalformedMessage(f"message envelope must be an object, got {type(data).__name__}")
        missing = [key for key in ("id", "name", "queue") if key not in data]
        if missing:
            raise MalformedMessage(f"message envelope lacks {', '.join(missing)}")
        try:
            headers = data.get("headers") or {}
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                raise ValueError("headers must map strings to strings")
            name, queue, ident = data["name"], data["queue"], data["id"]
            if not (isinstance(name, str) and isinstance(queue, str) and isinstance(ident, str)):
                raise ValueError("id, name and queue must be strings")
            timeout = data.get("timeout")
            unique_ttl = data.get("unique_ttl")
            now = time.time()
            return cls(
                id=ident,
                name=name,
                payload=data.get("payload"),
                queue=queue,
                attempts=int(data.get("attempts", 0)),
                max_retries=int(data.get("max_retries", 0)),
                retry=RetryPolicy.from_dict(data.get("retry") or {}),
                timeout=None if timeout is None else float(timeout),
                priority=int(data.get("priority", 0)),
                available_at=float(data.get("available_at", now)),
                created_at=float(data.get("created_at", now)),
                unique_key=data.get("unique_key"),
                unique_ttl=None if unique_ttl is None else float(unique_ttl),
                headers=headers,
                last_error=data.get("last_error"),
            )
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(f"invalid message envelope: {exc}") from exc

    @classmethod
    def decode(cls, body: bytes | str) -> Message:
        """Inverse of :meth:`encode`; raises :class:`MalformedMessage`."""
        return cls.from_dict(serializer.loads(body))


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


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue, or for all queues.

    ``completed`` is ``None`` when the driver keeps no record of finished jobs.
    """

    pending: int = 0
    delayed: int = 0
    reserved: int = 0
    completed: int | None = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int | None]:
        """A plain mapping with the five counts."""
        return dataclasses.asdict(self)

    def __add__(self, other: QueueStats) -> QueueStats:
        completed = (
            None if self.completed is None or other.completed is None else self.completed + other.completed
        )
        return QueueStats(
            pending=self.pending + other.pending,
            delayed=self.delayed + other.delayed,
            reserved=self.reserved + other.reserved,
            completed=completed,
            failed=self.failed + other.failed,
        )


@dataclass(frozen=True)
class ScheduleRecord:
    """A persisted schedule, as drivers store it.

    Drivers treat ``data`` as opaque JSON owned by the scheduler; they index
    ``name`` (unique), ``next_run_at`` and ``paused``, and keep ``last_tick``
    (the latest tick claimed) for :meth:`~jobs_core.driver.Driver.claim_tick`.
    """

    name: str
    data: Mapping[str, Any]
    next_run_at: float | None = None
    paused: bool = False
    last_tick: float | None = None
    updated_at: float = field(default_factory=time.time)
