"""Validation of a job's options, one function per kind of value.

Every way of setting an option — ``@job(...)``, a :class:`~jobs_core.job.Job`
subclass's class attributes, the fluent methods, and the ``queue=``,
``delay=`` and ``headers=`` arguments of dispatch — goes through these
functions, so a value outside :mod:`jobs_core.limits` is refused where it was
written, with a :class:`~jobs_core.errors.ConfigurationError` (an
:class:`~jobs_core.errors.InvalidName` for a queue name) that names the option
and the values it allows. ``bool`` is not a number here; NaN and infinities
are never durations.

Each function takes the value and the name of the option as the caller wrote
it (``"timeout"``, ``"Job.time_limit"``), and returns the value in its stored
form (seconds as ``float``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs_core.errors import ConfigurationError
from jobs_core.limits import (
    MAX_JOB_NAME,
    MAX_KEY,
    MAX_KEY_CONCURRENCY,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_UNIQUE_KEY,
    MIN_PRIORITY,
)
from jobs_core.message import Backoff, validate_queue_name

__all__ = [
    "backoff",
    "headers",
    "jitter",
    "job_name",
    "key_concurrency",
    "ordering_key",
    "priority",
    "queue",
    "retries",
    "seconds",
    "timeout",
    "unique_key",
    "unique_ttl",
]

_BACKOFFS = ("fixed", "exponential")


def seconds(option: str, value: object) -> float:
    """A duration: an int or float from 0 to :data:`~jobs_core.limits.MAX_SECONDS`."""
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value <= MAX_SECONDS:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    if kind is not bool and isinstance(value, (int, float)) and 0 <= value <= MAX_SECONDS:
        return float(value)  # an int or float subclass
    raise ConfigurationError(
        f"{option} must be a number of seconds from 0 to {MAX_SECONDS:.0f} (100 years), got {value!r}"
    )


def timeout(option: str, value: object) -> float | None:
    """A time limit: ``None`` (no limit), or seconds above 0 up to :data:`~jobs_core.limits.MAX_SECONDS`."""
    if value is None:
        return None
    kind = type(value)
    if (kind is float or kind is int) and 0 < value <= MAX_SECONDS:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    if kind is not bool and isinstance(value, (int, float)) and 0 < value <= MAX_SECONDS:
        return float(value)
    raise ConfigurationError(
        f"{option} must be None (no limit) or a number of seconds above 0 and at most "
        f"{MAX_SECONDS:.0f} (100 years), got {value!r}"
    )


def priority(option: str, value: object) -> int:
    """A priority: an int from :data:`~jobs_core.limits.MIN_PRIORITY` to
    :data:`~jobs_core.limits.MAX_PRIORITY` (32-bit signed).
    """
    if type(value) is int and MIN_PRIORITY <= value <= MAX_PRIORITY:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and MIN_PRIORITY <= value <= MAX_PRIORITY:
        return int(value)
    raise ConfigurationError(
        f"{option} must be an int from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs first), got {value!r}"
    )


def retries(option: str, value: object) -> int:
    """A retry count: an int from 0 to :data:`~jobs_core.limits.MAX_RETRIES`."""
    if type(value) is int and 0 <= value <= MAX_RETRIES:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRIES:
        return int(value)
    raise ConfigurationError(f"{option} must be an int from 0 to {MAX_RETRIES}, got {value!r}")


def backoff(option: str, value: object) -> Backoff:
    """A backoff: ``"fixed"`` or ``"exponential"``."""
    if value == "fixed" and type(value) is str:
        return "fixed"
    if value == "exponential" and type(value) is str:
        return "exponential"
    raise ConfigurationError(f"{option} must be 'fixed' or 'exponential', got {value!r}")


def jitter(option: str, value: object) -> bool:
    """Whether retries are jittered: ``True`` or ``False``."""
    if value is True or value is False:
        return value
    raise ConfigurationError(f"{option} must be True or False, got {value!r}")


def unique_key(option: str, value: object) -> str:
    """A unique key: a string of 1 to :data:`~jobs_core.limits.MAX_UNIQUE_KEY` characters."""
    if isinstance(value, str) and 0 < len(value) <= MAX_UNIQUE_KEY:
        return value
    raise ConfigurationError(
        f"{option} must be a string of 1 to {MAX_UNIQUE_KEY} characters, got {_short(value)}"
    )


def ordering_key(option: str, value: object) -> str:
    """An ordering key: a string of 1 to :data:`~jobs_core.limits.MAX_KEY` characters that UTF-8 can hold."""
    if isinstance(value, str) and 0 < len(value) <= MAX_KEY:
        try:
            value.encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: no backend can store it
        else:
            return str(value)
    raise ConfigurationError(
        f"{option} must be a string of 1 to {MAX_KEY} characters (no lone surrogates), got {_short(value)}"
    )


def key_concurrency(option: str, value: object) -> int:
    """Jobs of one ordering key that may run at once: an int from 1 to
    :data:`~jobs_core.limits.MAX_KEY_CONCURRENCY`.
    """
    if type(value) is int and 1 <= value <= MAX_KEY_CONCURRENCY:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_KEY_CONCURRENCY:
        return int(value)
    raise ConfigurationError(f"{option} must be an int from 1 to {MAX_KEY_CONCURRENCY}, got {_short(value)}")


def unique_ttl(option: str, value: object) -> float | None:
    """How long a unique key holds: ``None`` (until the job finishes) or seconds, as :func:`seconds`."""
    return None if value is None else seconds(option, value)


def queue(option: str, value: object) -> str:
    """A queue name (:func:`~jobs_core.message.validate_queue_name`).

    Raises :class:`~jobs_core.errors.InvalidName` (a
    :class:`~jobs_core.errors.ConfigurationError`) naming the option.
    """
    try:
        return validate_queue_name(value)
    except ConfigurationError as exc:
        raise type(exc)(f"{option}: {exc}") from None


def job_name(option: str, value: object) -> str:
    """A job name: 1 to :data:`~jobs_core.limits.MAX_JOB_NAME` printable characters (no newline or tab)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_JOB_NAME and value.isprintable():
        return value
    raise ConfigurationError(
        f"{option} must be a string of 1 to {MAX_JOB_NAME} printable characters "
        f"(no newline, tab or other control character), got {_short(value)}"
    )


def headers(option: str, value: object) -> dict[str, str]:
    """Message headers: a mapping of strings to strings (``None``: no headers)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        result: dict[str, Any] = dict(value)
        if all(type(k) is str and type(v) is str for k, v in result.items()):
            return result
        bad = next((k, v) for k, v in result.items() if not (type(k) is str and type(v) is str))
        raise ConfigurationError(
            f"{option} must map strings to strings, got {_short(bad[0])}: {_short(bad[1])}"
        )
    raise ConfigurationError(f"{option} must be a mapping of strings to strings, got {_short(value)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
