"""How a failed attempt is described: a one-line summary and the full text with its traceback.

The worker stores these with a failed job (``jobs failed`` shows them) and
passes them to events; a job that ran in a child process is described by the
type and traceback it reported (:class:`~jobs_core.errors.ChildJobError`).
"""

from __future__ import annotations

import os
import traceback
import types

from jobs_core.errors import ChildJobError
from jobs_core.limits import MAX_ERROR_CHARS

__all__ = ["describe_error", "type_name"]


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(summary, full)`` for a failed attempt.

    ``summary`` is ``"Type: message"``; ``full`` adds the traceback after a
    blank line. Both name the original type for jobs run in a child process.
    ``full`` is at most :data:`~jobs_core.limits.MAX_ERROR_CHARS` characters
    (its middle is cut), ``summary`` at most 500; an exception that cannot be
    turned into text is described by its type.
    """
    if isinstance(exc, ChildJobError):
        summary = f"{exc.type_name}: {_text_of(exc)}"
        return _clip(summary, 500), _clip(f"{summary}\n\n{exc.traceback_text}".rstrip(), MAX_ERROR_CHARS)
    summary = f"{type_name(type(exc))}: {_text_of(exc)}"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    except Exception as trouble:  # an exception whose __str__ or notes fail
        text = f"(the traceback could not be formatted: {type(trouble).__name__})"
    return _clip(summary, 500), _clip(f"{summary}\n\n{text}".rstrip(), MAX_ERROR_CHARS)


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot be shown."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: its head and its tail, with the cut said."""
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text) - limit} characters cut ...]\n"
    keep = max(0, limit - len(note))
    head = keep // 3
    return text[:head] + note + text[len(text) - (keep - head) :]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without its leading frames from jobs_core itself (the worker's own calls)."""
    first = tb
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _PACKAGE_DIR:
        tb = tb.tb_next
    return tb if tb is not None else first


def type_name(cls: type) -> str:
    """The qualified name of ``cls`` (bare for builtins and ``__main__``)."""
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"
