"""What travels between a dispatcher, a driver and a worker.

:class:`Message` is the job as the backend stores it; :class:`Delivery` is a
message leased to one worker; :class:`FailedJob` is an entry of the failed
store. All are plain data and encode to JSON. :class:`MessageBatch` holds
the messages of one bulk dispatch, encoded as they are read.

This module holds the envelope, one message or a batch of them; the leased
and failed forms live in :mod:`jobs_core.delivery`, the splicing of a batch's
encodings in :mod:`jobs_core.splicing`. Ids (:mod:`jobs_core.ids`), retry policies
(:mod:`jobs_core.retry_policy`), the checks of fields read back
(:mod:`jobs_core.fields`) and what ``stats`` reports
(:mod:`jobs_core.records`) live beside it and are importable from here too.

Over 400 lines: :class:`Message` and :class:`MessageBatch` are one envelope
encoded two ways (one message, or a batch spliced from a shared encoding),
and each of their fields is checked where it is encoded and read back.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, overload

from jobs_core import serializer
from jobs_core.delivery import Delivery, FailedJob
from jobs_core.errors import InvalidName, MalformedMessage
from jobs_core.fields import (
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_TIMESTAMP,
    MIN_PRIORITY,
    check_count,
    check_key,
    check_key_concurrency,
    check_priority,
    check_seconds,
    check_timestamp,
)
from jobs_core.ids import ID_LENGTH, new_id, new_ids
from jobs_core.records import QueueStats, ScheduleRecord
from jobs_core.retry_policy import _DEFAULT_POLICY, Backoff, RetryPolicy, _policy_dict, retry_policy
from jobs_core.splicing import ENCODED_KEY, build_spliced, dump_all, envelope_parts, splice

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "ENCODED_KEY",
    "ENVELOPE_VERSION",
    "ID_LENGTH",
    "QUEUE_NAME_PATTERN",
    "Backoff",
    "Delivery",
    "FailedJob",
    "Message",
    "MessageBatch",
    "QueueStats",
    "RetryPolicy",
    "ScheduleRecord",
    "new_id",
    "new_ids",
    "retry_policy",
    "validate_queue_name",
]

#: Version of the JSON envelope written by :meth:`Message.encode`.
ENVELOPE_VERSION = 1
#: Retries after the first failed attempt, unless the job or the dispatch says otherwise.
DEFAULT_MAX_RETRIES = 3

QUEUE_NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
"""Queue names: 1 to 100 characters of ``A-Z a-z 0-9 . _ -``, starting with a
letter or digit, and nothing else (no trailing newline). Safe as a SQL value,
a Kafka topic suffix and a file name."""


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not QUEUE_NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid queue name {name!r}: use 1-100 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Message:
    """One job as stored by a driver.

    ``attempts`` counts attempts that failed (incremented by ``retry`` and
    ``fail``); the worker gives up once it exceeds ``max_retries``.
    ``priority``: higher runs first. Times are Unix timestamps in seconds.
    ``key`` is the ordering key (``None``: none); on a driver with
    :attr:`~jobs_core.driver.Capability.ORDERED_KEYS`, jobs of one key start
    in the order they were stored, at most ``key_concurrency`` at once.
    """

    name: str
    payload: Any = None
    queue: str = "default"
    id: str = field(default_factory=new_id)
    attempts: int = 0
    max_retries: int = DEFAULT_MAX_RETRIES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    priority: int = 0
    available_at: float = field(default_factory=time.time)
    created_at: float = field(default_factory=time.time)
    unique_key: str | None = None
    unique_ttl: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    last_error: str | None = None
    key: str | None = None
    key_concurrency: int = 1

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
            "retry": _policy_dict(self.retry),
            "timeout": self.timeout,
            "priority": self.priority,
            "available_at": self.available_at,
            "created_at": self.created_at,
            "unique_key": self.unique_key,
            "unique_ttl": self.unique_ttl,
            "headers": dict(self.headers),
            "last_error": self.last_error,
            "key": self.key,
            "key_concurrency": self.key_concurrency,
        }

    def envelope(self) -> dict[str, Any]:
        """The envelope :meth:`encode` writes: :meth:`to_dict` without the fields
        that hold the value :meth:`from_dict` assumes when they are absent.

        A typical job's envelope is half the size of its full form, which
        every backend stores, and every worker parses, once per job.
        """
        data: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": self.id,
            "name": self.name,
            "payload": self.payload,
            "queue": self.queue,
        }
        if self.attempts:
            data["attempts"] = self.attempts
        if self.max_retries != DEFAULT_MAX_RETRIES:
            data["max_retries"] = self.max_retries
        if self.retry != _DEFAULT_POLICY:
            data["retry"] = _policy_dict(self.retry)
        if self.timeout is not None:
            data["timeout"] = self.timeout
        if self.priority:
            data["priority"] = self.priority
        data["created_at"] = self.created_at
        if self.available_at != self.created_at:
            data["available_at"] = self.available_at
        if self.unique_key is not None:
            data["unique_key"] = self.unique_key
        if self.unique_ttl is not None:
            data["unique_ttl"] = self.unique_ttl
        if self.headers:
            data["headers"] = dict(self.headers)
        if self.last_error is not None:
            data["last_error"] = self.last_error
        if self.key is not None:
            data["key"] = self.key
        if self.key_concurrency != 1:
            data["key_concurrency"] = self.key_concurrency
        return data

    def encode(self) -> bytes:
        """The message as UTF-8 JSON bytes (its :meth:`envelope`).

        A message built by bulk dispatch (:meth:`jobs_core.job.Job.to_messages`)
        carries its encoding already, computed from a shared envelope; it is
        returned as is.
        """
        cached: bytes | None = self.__dict__.get(ENCODED_KEY)
        if cached is not None:
            return cached
        serializer.check_json(self.payload, "$.payload")
        if self.headers:
            serializer.check_json(dict(self.headers), "$.headers")
        return serializer.dump_bytes(self.envelope(), checked=True)

    @classmethod
    def build(cls, fields: dict[str, Any]) -> Message:
        """A message from a complete, already validated field mapping.

        The fast path for drivers and bulk dispatch: it skips the dataclass
        ``__init__`` (about five times slower for a frozen dataclass).
        ``fields`` must hold every field; it is used as is.
        """
        message = object.__new__(cls)
        message.__dict__.update(fields)
        return message

    @classmethod
    def build_many(cls, common: dict[str, Any], payloads: Sequence[Any]) -> list[Message]:
        """Messages with the fields of ``common``, each with a new id and one of ``payloads``.

        The bulk-dispatch fast path: the envelope is encoded once, and each
        message's encoding is spliced from it, its id and its payload, then
        kept with the message for :meth:`encode`. ``common`` holds every
        field but ``id`` and ``payload``, already validated, and every payload
        must have passed :func:`~jobs_core.serializer.check_json`.
        """
        return build_spliced(cls, common, envelope_parts(cls, common), payloads)

    @classmethod
    def from_dict(cls, data: object) -> Message:
        """Build a message from its envelope; :class:`MalformedMessage` names what is wrong.

        Every field is checked against the limits of :mod:`jobs_core.limits`
        (types, finiteness, ranges), so that a message read back can always be
        run, retried or failed.
        """
        if type(data) is not dict:
            raise MalformedMessage(f"message envelope must be an object, got {type(data).__name__}")
        try:
            ident, name, queue = data["id"], data["name"], data["queue"]
        except KeyError:
            missing = [key for key in ("id", "name", "queue") if key not in data]
            raise MalformedMessage(f"message envelope lacks {', '.join(missing)}") from None
        get = data.get
        try:
            if not (type(name) is str and type(queue) is str and type(ident) is str):
                raise ValueError("id, name and queue must be strings")
            headers = get("headers") or {}
            if type(headers) is not dict or (
                headers and not all(type(k) is str and type(v) is str for k, v in headers.items())
            ):
                raise ValueError("headers must map strings to strings")
            retry = get("retry")
            timeout = get("timeout")
            unique_key = get("unique_key")
            unique_ttl = get("unique_ttl")
            last_error = get("last_error")
            if unique_key is not None and type(unique_key) is not str:
                raise ValueError("unique_key must be a string")
            if last_error is not None and type(last_error) is not str:
                raise ValueError("last_error must be a string")
            # The common values are checked inline (this runs once per job a worker reads);
            # the helpers check the rest and say what is wrong.
            created_at = get("created_at")
            if created_at is None:
                created_at = time.time()
            elif not (type(created_at) is float and 0.0 <= created_at <= MAX_TIMESTAMP):
                created_at = check_timestamp("created_at", created_at)
            available_at = get("available_at")
            if available_at is None:
                available_at = created_at
            elif not (type(available_at) is float and 0.0 <= available_at <= MAX_TIMESTAMP):
                available_at = check_timestamp("available_at", available_at)
            attempts = get("attempts", 0)
            if not (type(attempts) is int and 0 <= attempts <= MAX_RETRIES):
                attempts = check_count("attempts", attempts)
            max_retries = get("max_retries", DEFAULT_MAX_RETRIES)
            if not (type(max_retries) is int and 0 <= max_retries <= MAX_RETRIES):
                max_retries = check_count("max_retries", max_retries)
            priority = get("priority", 0)
            if not (type(priority) is int and MIN_PRIORITY <= priority <= MAX_PRIORITY):
                priority = check_priority(priority)
            key = get("key")
            key_concurrency = get("key_concurrency", 1)
            if key is not None or type(key_concurrency) is not int or key_concurrency != 1:
                key = check_key(key)
                key_concurrency = check_key_concurrency(key_concurrency)
            message = object.__new__(cls)
            message.__dict__.update(
                name=name,
                payload=get("payload"),
                queue=queue,
                id=ident,
                attempts=attempts,
                max_retries=max_retries,
                retry=RetryPolicy.from_dict(retry) if retry else _DEFAULT_POLICY,
                timeout=None if timeout is None else check_seconds("timeout", timeout),
                priority=priority,
                available_at=available_at,
                created_at=created_at,
                unique_key=unique_key,
                unique_ttl=None if unique_ttl is None else check_seconds("unique_ttl", unique_ttl),
                headers=headers,
                last_error=last_error,
                key=key,
                key_concurrency=key_concurrency,
            )
            return message
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedMessage(f"invalid message envelope: {exc}") from exc

    @classmethod
    def decode(cls, body: bytes | str) -> Message:
        """Inverse of :meth:`encode`; raises :class:`MalformedMessage`.

        Whatever goes wrong while reading a record (not JSON, nested too deep
        to decode, numbers out of range, fields of the wrong type) is a
        :class:`MalformedMessage` naming the problem, never another exception,
        so a driver can move that one record to the failed store and go on.
        """
        try:
            return cls.from_dict(serializer.loads(body))
        except MalformedMessage:
            raise
        except RecursionError:
            raise MalformedMessage("message nested too deeply to decode") from None
        except Exception as exc:  # any other surprise from odd data stays with this record
            raise MalformedMessage(f"cannot decode message: {type(exc).__name__}: {exc}") from exc


class MessageBatch(Sequence[Message]):
    """The messages of one bulk dispatch, encoded :data:`CHUNK` at a time as they are first read.

    To any reader it is a plain, immutable sequence of messages. A driver may
    also take the batch's shared fields (:attr:`common`) and its ids and
    encodings (:meth:`ids`, :meth:`encoded`) without a message object per job
    being built; reading the encodings a chunk at a time lets a driver that
    streams a batch to its backend (PostgreSQL's ``COPY``) encode while the
    backend stores what came before. Built like :meth:`Message.build_many`.
    """

    #: Messages encoded at once.
    CHUNK = 500

    def __init__(self, common: dict[str, Any], payloads: Sequence[Any]) -> None:
        self._common = common
        self._payloads = payloads
        self._parts = envelope_parts(Message, common)
        self._ids: list[str] = []
        self._bodies: list[bytes] = []
        self._built: list[Message | None] = [None] * len(payloads)
        self._dumped: list[bytes] | None = None  # the payloads' encodings, once largest() ran

    @property
    def common(self) -> Mapping[str, Any]:
        """The fields every message of the batch shares (all but ``id`` and ``payload``)."""
        return MappingProxyType(self._common)

    def _encode_to(self, end: int) -> None:
        while len(self._ids) < end:
            start = len(self._ids)
            chunk = self._payloads[start : start + self.CHUNK]
            if self._parts is None:  # no splicing: build and encode each message
                for offset, message in enumerate(build_spliced(Message, self._common, None, chunk)):
                    self._built[start + offset] = message
                    self._ids.append(message.id)
                    self._bodies.append(message.encode())
                continue
            ids = new_ids(len(chunk))
            # The payloads' encodings: kept from largest(), or made now.
            kept = self._dumped
            dumped = dump_all(chunk) if kept is None else kept[start : start + self.CHUNK]
            self._bodies.extend(splice(self._parts, ids, dumped))
            self._ids.extend(ids)

    def largest(self) -> int:
        """The size in bytes of the batch's largest encoded message.

        Worked out from the shared envelope and each payload's encoding (kept
        for the messages' encodings), without encoding the messages: a driver
        that writes a batch as it encodes it checks sizes first with this.
        """
        if not self._payloads:
            return 0
        if self._parts is None:
            _, bodies = self.encoded()
            return max(map(len, bodies))
        if self._dumped is None:
            self._dumped = dump_all(self._payloads)
        head, middle, tail = self._parts
        fixed = len(head) + len(middle) + len(tail) + ID_LENGTH
        return fixed + max(map(len, self._dumped))

    def ids(self) -> list[str]:
        """Every message's id, in order."""
        self._encode_to(len(self))
        return list(self._ids)

    def encoded(self, start: int = 0, end: int | None = None) -> tuple[list[str], list[bytes]]:
        """The ids and encodings of messages ``start`` to ``end`` (default: to the last)."""
        end = len(self) if end is None else min(end, len(self))
        self._encode_to(end)
        return self._ids[start:end], self._bodies[start:end]

    def _message(self, position: int) -> Message:
        message = self._built[position]
        if message is None:
            self._encode_to(position + 1)
            message = object.__new__(Message)
            fields = message.__dict__
            fields.update(self._common)
            fields["id"] = self._ids[position]
            fields["payload"] = self._payloads[position]
            fields[ENCODED_KEY] = self._bodies[position]
            self._built[position] = message
        return message

    def __len__(self) -> int:
        return len(self._payloads)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return [self._message(i) for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError("message batch index out of range")
        return self._message(position)

    def __iter__(self) -> Iterator[Message]:
        message = self._message
        for position in range(len(self)):
            yield message(position)
