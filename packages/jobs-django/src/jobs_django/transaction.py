"""Enqueue in the caller's Django transaction: a SQLAlchemy connection over Django's own.

The database driver stores jobs in a caller's transaction when it is given a
SQLAlchemy ``Connection``. :func:`connection` makes one over the DBAPI
connection Django holds for a database alias (in this thread), so that a job
enqueued inside ``transaction.atomic()`` is written by the same connection,
in the same transaction, as the caller's rows: committed with them, or gone
with a rollback.

The SQLAlchemy side never ends that transaction and never closes Django's
connection: its engine's commit, rollback and close are no-ops, and its pool
resets nothing when the connection is handed back. Django alone commits,
rolls back and closes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from jobs_django.errors import DjangoConfigurationError

#: Per Django database alias: the SQLAlchemy engine that borrows Django's connection.
_engines: dict[str, Any] = {}
_lock = threading.Lock()


def in_atomic_block(using: str) -> bool:
    """Whether Django's connection ``using`` is inside ``transaction.atomic()`` in this thread."""
    from django.db import connections

    return bool(connections[using].in_atomic_block)


@contextlib.contextmanager
def connection(using: str = "default") -> Iterator[Any]:
    """A SQLAlchemy ``Connection`` on Django's connection ``using``, in its open transaction.

    Pass it as ``transaction=`` to ``Jobs.dispatch``: the job is stored with
    the rows the caller wrote in the same ``transaction.atomic()`` block.
    Raises :class:`~jobs_django.errors.DjangoConfigurationError` for a
    database other than SQLite, PostgreSQL or MySQL/MariaDB.
    """
    from django.db import connections

    django_connection = connections[using]
    django_connection.ensure_connection()
    engine = _engine(using, django_connection)
    with engine.connect() as conn:
        yield conn


def _engine(using: str, django_connection: Any) -> Any:
    engine = _engines.get(using)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(using)
        if engine is None:
            engine = _engines[using] = _borrowing_engine(using, django_connection.vendor)
    return engine


def _borrowing_engine(using: str, vendor: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if vendor == "sqlite":
        url = "sqlite+pysqlite://"
    elif vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        url = "postgresql+psycopg://" if is_psycopg3 else "postgresql+psycopg2://"
    elif vendor == "mysql":  # MySQL and MariaDB: Django's connection is mysqlclient's (MySQLdb)
        url = "mysql+mysqldb://"
    else:
        raise DjangoConfigurationError(
            f"enqueueing in the transaction of the Django database {using!r} needs SQLite, PostgreSQL "
            f"or MySQL/MariaDB, not {vendor}; set TRANSACTIONAL to False"
        )

    def borrow() -> Any:
        from django.db import connections

        return connections[using].connection  # this thread's DBAPI connection

    engine = sa.create_engine(url, creator=borrow, poolclass=NullPool, pool_reset_on_return=None)
    dialect: Any = engine.dialect
    dialect.do_commit = _leave
    dialect.do_rollback = _leave
    dialect.do_close = _leave
    return engine


def _leave(dbapi_connection: Any) -> None:
    """Django ends the transaction and closes the connection, never SQLAlchemy."""
