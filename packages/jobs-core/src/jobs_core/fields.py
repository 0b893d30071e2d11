"""Checks of the numeric fields of an envelope read back from a backend.

Each raises ``ValueError``, ``TypeError`` or ``OverflowError`` naming the
field; :meth:`Message.from_dict <jobs_core.message.Message.from_dict>` turns
them into :class:`~jobs_core.errors.MalformedMessage`.
"""

from __future__ import annotations

from jobs_core import limits

MAX_TIMESTAMP = limits.MAX_TIMESTAMP
MAX_RETRIES = limits.MAX_RETRIES
MIN_PRIORITY, MAX_PRIORITY = limits.MIN_PRIORITY, limits.MAX_PRIORITY


def check_count(what: str, value: object) -> int:
    """An envelope count (``attempts``, ``max_retries``): an int, 0 to ``MAX_RETRIES``."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value <= limits.MAX_RETRIES:
        raise ValueError(f"{what} must be between 0 and {limits.MAX_RETRIES}, got {value!r}")
    return value


def check_priority(value: object) -> int:
    """An envelope priority: a 32-bit signed int."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and limits.MIN_PRIORITY <= value <= limits.MAX_PRIORITY:
        return value
    raise ValueError(
        f"priority must be an integer between {limits.MIN_PRIORITY} and {limits.MAX_PRIORITY}, got {value!r}"
    )


def check_key(value: object) -> str | None:
    """An envelope ordering key: ``None``, or 1 to :data:`~jobs_core.limits.MAX_KEY` characters."""
    if value is None:
        return None
    if type(value) is str and 0 < len(value) <= limits.MAX_KEY:
        try:
            value.encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate
        else:
            return value
    raise ValueError(
        f"key must be a string of 1 to {limits.MAX_KEY} characters (no lone surrogates), got {value!r:.80}"
    )


def check_key_concurrency(value: object) -> int:
    """An envelope ``key_concurrency``: an int from 1 to :data:`~jobs_core.limits.MAX_KEY_CONCURRENCY`."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and 1 <= value <= limits.MAX_KEY_CONCURRENCY:
        return value
    raise ValueError(
        f"key_concurrency must be an integer from 1 to {limits.MAX_KEY_CONCURRENCY}, got {value!r}"
    )


def as_number(value: object) -> float:
    """A JSON number as a float (``TypeError`` for anything else; ``OverflowError`` for a huge int)."""
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)  # OverflowError for a huge int: a MalformedMessage
    raise TypeError(f"expected a number, got {type(value).__name__}")


def check_seconds(what: str, value: object) -> float:
    """An envelope duration: finite, from 0 to :data:`~jobs_core.limits.MAX_SECONDS`."""
    seconds = as_number(value)
    if not 0.0 <= seconds <= limits.MAX_SECONDS:  # False for NaN too
        raise ValueError(f"{what} must be between 0 and {limits.MAX_SECONDS:.0f} seconds, got {value!r}")
    return seconds


def check_timestamp(what: str, value: object) -> float:
    """An envelope time: a finite Unix timestamp from 0 to :data:`~jobs_core.limits.MAX_TIMESTAMP`."""
    stamp = value if type(value) is float else as_number(value)
    if not 0.0 <= stamp <= limits.MAX_TIMESTAMP:
        raise ValueError(f"{what} must be a Unix time from 0 to {limits.MAX_TIMESTAMP:.0f}, got {value!r}")
    return stamp
