"""Translation of database errors into :mod:`jobs_core.errors` types.

Messages name the backend and its ``host:port`` (or SQLite file), never the
password or a secret query value (the client's own text is scrubbed with
:func:`jobs_core.urls.redact_text`), and say whether trying again may help.
"""

from __future__ import annotations

import sqlalchemy as sa
from jobs_core.errors import BackendError, BackendUnavailable, JobsError, OperationTimedOut
from jobs_core.urls import redact_text

from jobs_database.settings import DatabaseSettings
from jobs_database.sqlite_errors import is_sqlite_disconnect, translate_sqlite

_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}


def _detail(exc: BaseException, settings: DatabaseSettings) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return redact_text(text, secrets=(*settings.secrets, str(settings.url.password or "")))[:300]


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (so a retry on a new one may work)."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlite = is_sqlite_disconnect(exc)
        if sqlite is not None:
            return sqlite
        return (
            isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
            and not _is_locked(exc)
            and not is_missing_database(exc)
        )
    return False


def is_missing_database(exc: BaseException) -> bool:
    """Whether the server answered that the database named in the URL does not exist."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "3D000":  # PostgreSQL: invalid_catalog_name
        return True
    args = getattr(orig, "args", ())
    if args and args[0] == 1049:  # MySQL/MariaDB: ER_BAD_DB_ERROR
        return True
    text = str(orig)
    return "FATAL:" in text and 'database "' in text and "does not exist" in text


def _is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "lock wait timeout" in text or "deadlock" in text


def translate(exc: BaseException, settings: DatabaseSettings, operation: str) -> JobsError:
    """The :class:`~jobs_core.errors.JobsError` for a native database error."""
    name = _NAMES[settings.backend]
    detail = _detail(exc, settings)
    if settings.backend == "sqlite":
        where = f"the SQLite database at {settings.url.database or ':memory:'}"
        known = translate_sqlite(exc, operation, where, detail)
        if known is not None:
            return known
    if settings.backend != "sqlite" and is_missing_database(exc):
        return BackendError(
            f"{operation}: the {name} server at {settings.location} has no database "
            f"{settings.url.database!r}: create it, or name an existing database in the URL"
        )
    if _is_locked(exc):
        return OperationTimedOut(f"{operation}: the {name} database at {settings.location} is busy: {detail}")
    if is_disconnect(exc):
        return BackendUnavailable(
            f"{operation}: cannot reach the {name} database at {settings.location}: {detail}"
        )
    return BackendError(f"{operation} failed on the {name} database at {settings.location}: {detail}")
