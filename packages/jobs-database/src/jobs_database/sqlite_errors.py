"""SQLite errors by what they are: its result code, not the exception class.

The ``sqlite3`` module raises ``OperationalError`` for a full disk, a
read-only file, a syntax error and a locked database alike. The result code
(``sqlite_errorcode``, Python 3.11 and later; the error text before that) says
which, and each becomes the :mod:`jobs_core.errors` type that fits:

* ``SQLITE_FULL``: :class:`~jobs_core.errors.StorageFull` (retryable);
* ``SQLITE_READONLY``: :class:`~jobs_core.errors.ReadOnlyBackend`;
* ``SQLITE_BUSY``, ``SQLITE_LOCKED``: :class:`~jobs_core.errors.OperationTimedOut` (retryable);
* ``SQLITE_CANTOPEN``, ``SQLITE_IOERR``: :class:`~jobs_core.errors.BackendUnavailable` (retryable);
* ``SQLITE_ERROR`` (an SQL or schema error), ``SQLITE_CORRUPT``,
  ``SQLITE_NOTADB``, ``SQLITE_CONSTRAINT`` and any other code:
  :class:`~jobs_core.errors.BackendError`, saying which.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from jobs_core.errors import (
    BackendError,
    BackendUnavailable,
    JobsError,
    OperationTimedOut,
    ReadOnlyBackend,
    StorageFull,
)

#: Primary SQLite result codes (the low byte of an extended code).
SQLITE_ERROR = 1
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_CONSTRAINT = 19
SQLITE_NOTADB = 26

#: Before Python 3.11 exceptions carry no result code: the code behind each of SQLite's texts.
_TEXTS = (
    ("database or disk is full", SQLITE_FULL),
    ("readonly database", SQLITE_READONLY),
    ("database is locked", SQLITE_BUSY),
    ("database table is locked", SQLITE_LOCKED),
    ("unable to open database file", SQLITE_CANTOPEN),
    ("disk i/o error", SQLITE_IOERR),
    ("malformed", SQLITE_CORRUPT),
    ("file is not a database", SQLITE_NOTADB),
    ("constraint failed", SQLITE_CONSTRAINT),
    ("syntax error", SQLITE_ERROR),
    ("no such ", SQLITE_ERROR),
)

_Build = Callable[[str, str, str], JobsError]


def _what(kind: type[JobsError], happened: str) -> _Build:
    def build(operation: str, where: str, detail: str) -> JobsError:
        return kind(f"{operation}: {where} {happened}: {detail}")

    return build


_ERRORS: dict[int, _Build] = {
    SQLITE_FULL: _what(
        StorageFull, "is full: no space is left on its disk, or it reached its max_page_count"
    ),
    SQLITE_READONLY: _what(
        ReadOnlyBackend,
        "is read-only: check the permissions of the file and of its directory "
        "(SQLite writes the -wal and -shm files beside it)",
    ),
    SQLITE_BUSY: _what(OperationTimedOut, "is busy: another connection held its write lock too long"),
    SQLITE_LOCKED: _what(OperationTimedOut, "is busy: a table is locked by another statement"),
    SQLITE_CANTOPEN: _what(BackendUnavailable, "cannot be opened (is its directory there, and readable?)"),
    SQLITE_IOERR: _what(BackendUnavailable, "hit a disk I/O error"),
    SQLITE_CORRUPT: _what(BackendError, "is corrupt"),
    SQLITE_NOTADB: _what(BackendError, "is not a SQLite database"),
    SQLITE_CONSTRAINT: _what(BackendError, "refused the write: a constraint failed"),
    SQLITE_ERROR: _what(
        BackendError,
        "refused the statement (an SQL or schema error: are the jobs tables as this driver made them?)",
    ),
}


def result_code(exc: BaseException) -> int | None:
    """The primary SQLite result code behind ``exc`` (a SQLAlchemy or ``sqlite3`` error), if any."""
    orig = getattr(exc, "orig", None) or exc
    if not isinstance(orig, sqlite3.Error):
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(orig).lower()
    return next((found for phrase, found in _TEXTS if phrase in text), None)


def translate_sqlite(exc: BaseException, operation: str, where: str, detail: str) -> JobsError | None:
    """The error for a SQLite failure, by its result code; ``None`` if ``exc`` is no SQLite error.

    ``where`` names the database (``"the SQLite database at jobs.db"``) and
    ``detail`` is SQLite's own text, already cleaned for display.
    """
    code = result_code(exc)
    if code is None:
        return None
    build = _ERRORS.get(code)
    if build is None:
        return BackendError(f"{operation} failed on {where} (SQLite result code {code}): {detail}")
    return build(operation, where, detail)


def is_sqlite_disconnect(exc: BaseException) -> bool | None:
    """Whether a SQLite error means the database could not be reached (``None``: not a SQLite error)."""
    code = result_code(exc)
    if code is None:
        return None
    return code in (SQLITE_CANTOPEN, SQLITE_IOERR)
