"""Ordering keys on Kafka: the record key of a job, and how many of a key may run at once.

A job dispatched with ``Job.key("customer-42")`` is written with the record
key ``customer-42`` (UTF-8), so every job of the key goes to one partition of
its queue topic (the producers hash keys with ``murmur2``, as Java producers
do). A ``key_concurrency`` other than 1 travels in the record header
:data:`KEY_CONCURRENCY_HEADER`, which the consumer reads without decoding the
job. A record written by another service is ordered by its record key alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs_core.limits import MAX_KEY, MAX_KEY_CONCURRENCY
from jobs_core.message import Message

from jobs_kafka.producing import Headers

#: Header holding a keyed job's ``key_concurrency`` (absent: 1).
KEY_CONCURRENCY_HEADER = "jobs.key-concurrency"


def record_key(message: Message) -> bytes | None:
    """The record key of ``message``: its ordering key in UTF-8, or ``None``."""
    key = message.key
    return None if key is None else key.encode()


def key_headers(message: Message) -> Headers | None:
    """The headers a queue record of ``message`` carries for its key (``None``: none)."""
    if message.key is None or message.key_concurrency == 1:
        return None
    return [(KEY_CONCURRENCY_HEADER, str(message.key_concurrency).encode())]


def key_concurrency(headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    """The records of a key that may run at once, from a record's headers (1 unless a header says more)."""
    for name, value in headers or ():
        if name == KEY_CONCURRENCY_HEADER and value:
            try:
                count = int(value)
            except ValueError:
                return 1
            return count if 1 <= count <= MAX_KEY_CONCURRENCY else 1
    return 1


def key_of_record(value: bytes | None) -> str | None:
    """A record key as an ordering key (``None`` when it is not valid UTF-8 or too long)."""
    if not value:
        return None
    try:
        key = value.decode()
    except UnicodeDecodeError:
        return None
    return key if len(key) <= MAX_KEY else None
