"""Driver-level SQL on the hot path, without SQLAlchemy's per-statement work.

The bulk insert and the PostgreSQL claim and ack run on the DBAPI cursor of
the caller's SQLAlchemy connection (inside its transaction, if any);
:func:`dbapi_errors` turns the DBAPI's errors into SQLAlchemy's, as
SQLAlchemy would, and drops a connection that died, so that the driver's
retry and error translation treat them like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa


@contextlib.contextmanager
def dbapi_errors(conn: sa.Connection, statement: str) -> Iterator[None]:
    """Raise DBAPI errors of the block as :class:`sqlalchemy.exc.DBAPIError`."""
    try:
        yield
    except conn.dialect.loaded_dbapi.Error as exc:
        gone = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if gone:
            conn.invalidate()
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=gone
        ) from exc


def fetch_all(conn: sa.Connection, statement: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``statement`` (DBAPI parameter style) on ``conn``; its rows, if it returns any."""
    with dbapi_errors(conn, statement):
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()
