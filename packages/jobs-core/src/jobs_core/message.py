"""What travels between a dispatcher, a driver and a worker.

:class:`Message` is the job as the backend stores it; :class:`Delivery` is a
message leased to one worker; :class:`FailedJob` is an entry of the failed
store; :class:`QueueStats` is what ``stats`` reports. All are plain data and
encode to JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, overload

from jobs_core import limits, serializer
from jobs_core.errors import InvalidName, MalformedMessage

#: Version of the JSON envelope written by :meth:`Message.encode`.
ENVELOPE_VERSION = 1
#: Characters in a message id made by :func:`new_id` or :func:`new_ids`.
ID_LENGTH = 32
#: Retries after the first failed attempt, unless the job or the dispatch says otherwise.
DEFAULT_MAX_RETRIES = 3

QUEUE_NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
"""Queue names: 1 to 100 characters of ``A-Z a-z 0-9 . _ -``, starting with a
letter or digit, and nothing else (no trailing newline). Safe as a SQL value,
a Kafka topic suffix and a file name."""

Backoff = Literal["fixed", "exponential"]


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not QUEUE_NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"invalid queue name {name!r}: use 1-100 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def new_id() -> str:
    """A new message id: 32 hex characters, time-ordered (UUIDv7 layout)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    return f"{millis & 0xFFFFFFFFFFFF:012x}7{rand_a:03x}{(0b10 << 62) | rand_b:016x}"


#: Byte maps that set the version nibble (7) and the variant bits (10) of an id.
_VERSION_BITS = bytes((i & 0x0F) | 0x70 for i in range(256))
_VARIANT_BITS = bytes((i & 0x3F) | 0x80 for i in range(256))


def new_ids(count: int) -> list[str]:
    """``count`` new message ids at once (bulk dispatch): the layout of :func:`new_id`.

    They share the current millisecond; 74 random bits each keep them unique.
    The ids are laid out as one buffer of 16 bytes each, whose fixed bytes are
    set a column at a time (extended slices), then hex-encoded in one call.
    """
    if count <= 0:
        return []
    stamp = ((time.time_ns() // 1_000_000) & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    raw = bytearray(os.urandom(16 * count))
    for column in range(6):
        raw[column::16] = stamp[column : column + 1] * count
    raw[6::16] = raw[6::16].translate(_VERSION_BITS)
    raw[8::16] = raw[8::16].translate(_VARIANT_BITS)
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]


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
        return dict(_policy_dict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Inverse of :meth:`to_dict`; raises :class:`MalformedMessage` on bad data."""
        if data == _DEFAULT_POLICY_DICT:
            return _DEFAULT_POLICY
        try:
            get = data.get
            return _policy_from_values(
                get("backoff", "exponential"),
                get("delay", 1.0),
                get("max_delay", 3600.0),
                get("jitter", True),
            )
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise MalformedMessage(f"invalid retry policy: {exc}") from exc


@functools.lru_cache(maxsize=256)
def _policy_dict(policy: RetryPolicy) -> dict[str, Any]:
    """The JSON form of a policy, computed once per distinct policy (read only)."""
    return {
        "backoff": policy.backoff,
        "delay": policy.delay,
        "max_delay": policy.max_delay,
        "jitter": policy.jitter,
    }


def retry_policy(backoff: Backoff, delay: float, max_delay: float, jitter: bool) -> RetryPolicy:
    """A shared, validated :class:`RetryPolicy` for these values (cached)."""
    return _policy_from_values(backoff, delay, max_delay, jitter)


@functools.lru_cache(maxsize=256)
def _policy_from_values(backoff: object, delay: object, max_delay: object, jitter: object) -> RetryPolicy:
    """A policy from envelope values, validated and built once per distinct tuple."""
    if backoff not in ("fixed", "exponential"):
        raise ValueError(f"unknown backoff {backoff!r}")
    return RetryPolicy(
        backoff=backoff,
        delay=_seconds("retry delay", delay),
        max_delay=_seconds("max retry delay", max_delay),
        jitter=bool(jitter),
    )


_DEFAULT_POLICY = RetryPolicy()
_DEFAULT_POLICY_DICT = _DEFAULT_POLICY.to_dict()

#: Where a message built with a known encoding keeps it (outside the dataclass
#: fields: ``replace`` and ``__init__`` build messages without it).
ENCODED_KEY = "_encoded"

# Placeholders spliced out of a shared envelope by Message.build_many; the
# control characters keep them apart from anything a user would write.
_ID_MARK = "\x01jobs-id\x01"
_PAYLOAD_MARK = "\x01jobs-payload\x01"


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
        return _build_spliced(cls, common, _envelope_parts(cls, common), payloads)

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
            elif not (type(created_at) is float and 0.0 <= created_at <= _MAX_TIMESTAMP):
                created_at = _timestamp("created_at", created_at)
            available_at = get("available_at")
            if available_at is None:
                available_at = created_at
            elif not (type(available_at) is float and 0.0 <= available_at <= _MAX_TIMESTAMP):
                available_at = _timestamp("available_at", available_at)
            attempts = get("attempts", 0)
            if not (type(attempts) is int and 0 <= attempts <= _MAX_RETRIES):
                attempts = _count("attempts", attempts)
            max_retries = get("max_retries", DEFAULT_MAX_RETRIES)
            if not (type(max_retries) is int and 0 <= max_retries <= _MAX_RETRIES):
                max_retries = _count("max_retries", max_retries)
            priority = get("priority", 0)
            if not (type(priority) is int and _MIN_PRIORITY <= priority <= _MAX_PRIORITY):
                priority = _priority(priority)
            message = object.__new__(cls)
            message.__dict__.update(
                name=name,
                payload=get("payload"),
                queue=queue,
                id=ident,
                attempts=attempts,
                max_retries=max_retries,
                retry=RetryPolicy.from_dict(retry) if retry else _DEFAULT_POLICY,
                timeout=None if timeout is None else _seconds("timeout", timeout),
                priority=priority,
                available_at=available_at,
                created_at=created_at,
                unique_key=unique_key,
                unique_ttl=None if unique_ttl is None else _seconds("unique_ttl", unique_ttl),
                headers=headers,
                last_error=last_error,
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


_MAX_TIMESTAMP = limits.MAX_TIMESTAMP
_MAX_RETRIES = limits.MAX_RETRIES
_MIN_PRIORITY, _MAX_PRIORITY = limits.MIN_PRIORITY, limits.MAX_PRIORITY


def _count(what: str, value: object) -> int:
    """An envelope count (``attempts``, ``max_retries``): an int, 0 to ``MAX_RETRIES``."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value <= limits.MAX_RETRIES:
        raise ValueError(f"{what} must be between 0 and {limits.MAX_RETRIES}, got {value!r}")
    return value


def _priority(value: object) -> int:
    """An envelope priority: a 32-bit signed int."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and limits.MIN_PRIORITY <= value <= limits.MAX_PRIORITY:
        return value
    raise ValueError(
        f"priority must be an integer between {limits.MIN_PRIORITY} and {limits.MAX_PRIORITY}, got {value!r}"
    )


def _number(value: object) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)  # OverflowError for a huge int: a MalformedMessage
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _seconds(what: str, value: object) -> float:
    """An envelope duration: finite, from 0 to :data:`~jobs_core.limits.MAX_SECONDS`."""
    seconds = _number(value)
    if not 0.0 <= seconds <= limits.MAX_SECONDS:  # False for NaN too
        raise ValueError(f"{what} must be between 0 and {limits.MAX_SECONDS:.0f} seconds, got {value!r}")
    return seconds


def _timestamp(what: str, value: object) -> float:
    """An envelope time: a finite Unix timestamp from 0 to :data:`~jobs_core.limits.MAX_TIMESTAMP`."""
    stamp = value if type(value) is float else _number(value)
    if not 0.0 <= stamp <= limits.MAX_TIMESTAMP:
        raise ValueError(f"{what} must be a Unix time from 0 to {limits.MAX_TIMESTAMP:.0f}, got {value!r}")
    return stamp


def _envelope_parts(cls: type[Message], common: dict[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    """The encoded envelope of ``common`` cut around its id and payload, or ``None``
    when the cut would be ambiguous (a field that contains a placeholder).
    """
    template = cls.build({**common, "id": _ID_MARK, "payload": _PAYLOAD_MARK})
    shell = serializer.dump_bytes(template.envelope(), checked=True)
    id_mark, payload_mark = serializer.dump_bytes(_ID_MARK), serializer.dump_bytes(_PAYLOAD_MARK)
    at_id, at_payload = shell.find(id_mark), shell.find(payload_mark)
    if shell.count(id_mark) != 1 or shell.count(payload_mark) != 1 or at_payload < at_id:
        return None
    head = shell[: at_id + 1]  # up to the id's opening quote
    middle = shell[at_id + len(id_mark) - 1 : at_payload]  # from its closing quote
    tail = shell[at_payload + len(payload_mark) :]
    return head, middle, tail


def _build_spliced(
    cls: type[Message],
    common: dict[str, Any],
    parts: tuple[bytes, bytes, bytes] | None,
    payloads: Sequence[Any],
) -> list[Message]:
    ids = new_ids(len(payloads))
    if parts is None:
        return [cls.build({**common, "id": i, "payload": p}) for i, p in zip(ids, payloads, strict=True)]
    new = object.__new__
    messages = []
    for ident, payload, body in zip(ids, payloads, _splice(parts, ids, _dump_all(payloads)), strict=True):
        message = new(cls)
        fields = message.__dict__
        fields.update(common)
        fields["id"] = ident
        fields["payload"] = payload
        fields[ENCODED_KEY] = body
        messages.append(message)
    return messages


def _splice(parts: tuple[bytes, bytes, bytes], ids: Sequence[str], payloads: Sequence[bytes]) -> list[bytes]:
    """Each message's encoding: the shared envelope with its id and encoded payload put in."""
    head, middle, tail = parts
    join = b"".join
    return [
        join((head, ident.encode(), middle, payload, tail))
        for ident, payload in zip(ids, payloads, strict=True)
    ]


def _dump_all(payloads: Sequence[Any]) -> list[bytes]:
    """The encodings of payloads already checked with :func:`~jobs_core.serializer.check_json`."""
    fast = serializer.FAST_DUMPS
    if fast is not None:
        try:
            return [fast(payload) for payload in payloads]
        except TypeError:
            pass  # an integer beyond 64 bits: dump_bytes encodes it
    dump = serializer.dump_bytes
    return [dump(payload, checked=True) for payload in payloads]


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
        self._parts = _envelope_parts(Message, common)
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
                for offset, message in enumerate(_build_spliced(Message, self._common, None, chunk)):
                    self._built[start + offset] = message
                    self._ids.append(message.id)
                    self._bodies.append(message.encode())
                continue
            ids = new_ids(len(chunk))
            # The payloads' encodings: kept from largest(), or made now.
            kept = self._dumped
            dumped = _dump_all(chunk) if kept is None else kept[start : start + self.CHUNK]
            self._bodies.extend(_splice(self._parts, ids, dumped))
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
            self._dumped = _dump_all(self._payloads)
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
