"""Building the SQLAlchemy engine for each backend.

* PostgreSQL (psycopg 3): a connection pool, a bounded ``connect_timeout``,
  and bitmap scans off for the driver's own connections (see
  :data:`PG_SESSION`).
* MySQL / MariaDB (PyMySQL): the same, with ``READ COMMITTED`` isolation so
  that claims never take gap locks, and ``utf8mb4``.
* SQLite: WAL journal, a busy timeout, and every transaction opened with
  ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout
  instead of failing on a lock upgrade. ``sqlite:///:memory:`` is one
  connection shared by the driver's threads (the driver serialises access).
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from jobs_core.errors import InvalidURL
from jobs_core.urls import redact_text
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from jobs_database.settings import DatabaseSettings

#: Run on each new PostgreSQL connection of the driver. Without statistics on a
#: new queue (a fresh table, or a queue that appeared since the last ANALYZE),
#: the planner may claim through a bitmap scan of the whole queue plus a sort:
#: each claim then reads every waiting row, and draining a backlog becomes
#: quadratic. With bitmap scans off, a claim walks the claim index in order and
#: stops after its batch, whatever the statistics say.
PG_SESSION = "SET enable_bitmapscan = off"


#: Added for the connections of :func:`create_engine` with ``relaxed=True``.
PG_RELAXED = "SET synchronous_commit = off"


def create_engine(settings: DatabaseSettings, autocommit: bool = False, relaxed: bool = False) -> sa.Engine:
    """A new engine for ``settings`` (see :func:`_create_engine`).

    Raises :class:`~jobs_core.errors.InvalidURL` when SQLAlchemy refuses the
    URL, with the URL and SQLAlchemy's text redacted.
    """
    try:
        return _create_engine(settings, autocommit, relaxed)
    except sa.exc.ArgumentError as exc:
        detail = redact_text(" ".join(str(exc).split()), secrets=settings.secrets)
        raise InvalidURL(f"invalid database URL {settings.display!r}: {detail}") from None


def _create_engine(settings: DatabaseSettings, autocommit: bool, relaxed: bool) -> sa.Engine:
    """A new engine for ``settings``.

    With ``autocommit`` (PostgreSQL, MySQL), every statement commits on its
    own: the driver uses such an engine for the hot-path statements that are
    atomic by themselves, saving the ``BEGIN`` and ``COMMIT`` round trips.

    With ``relaxed`` (PostgreSQL), commits do not wait for the WAL to reach
    the disk (``synchronous_commit = off``). The driver uses it only for claims
    and acks: a server crash can forget the last fraction of a second of them,
    which puts those jobs back on the queue to run again (at least once, as
    always), and never loses a job. Enqueues always wait for the disk.
    """
    if settings.backend == "sqlite":
        return _sqlite_engine(settings)
    connect_args: dict[str, Any] = {"connect_timeout": max(1, math.ceil(settings.connect_timeout))}
    kwargs: dict[str, Any] = {
        "pool_size": settings.pool_size,
        "max_overflow": settings.pool_size,
        # No pre-ping round trip per checkout: an operation on a dropped
        # connection fails before it commits and the driver retries it.
        "pool_pre_ping": False,
        "pool_timeout": max(settings.connect_timeout, 5.0),
    }
    url = settings.url
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        kwargs["pool_reset_on_return"] = None
    if settings.backend == "postgresql":
        if "application_name" not in url.query:
            connect_args["application_name"] = "jobs"
    else:
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        connect_args["read_timeout"] = 60
        connect_args["write_timeout"] = 60
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    if settings.backend == "postgresql":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            if settings.pooler == "transaction":
                # Each transaction may run on another server connection: no
                # prepared statement (psycopg's or the driver's, see
                # jobs_database.prepared.usable) and no session setting, which
                # would stay on a server connection that other clients use.
                dbapi_connection.prepare_threshold = None
                return
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            try:
                dbapi_connection.execute(PG_SESSION)
                if relaxed:
                    dbapi_connection.execute(PG_RELAXED)
            finally:
                dbapi_connection.autocommit = autocommit

    return engine


def _sqlite_engine(settings: DatabaseSettings) -> sa.Engine:
    connect_args: dict[str, Any] = {"timeout": settings.busy_timeout, "check_same_thread": False}
    if settings.in_memory:
        engine = sa.create_engine(settings.url, connect_args=connect_args, poolclass=StaticPool)
    else:
        engine = sa.create_engine(
            settings.url,
            connect_args=connect_args,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
        )
    busy_ms = int(settings.busy_timeout * 1000)
    synchronous = settings.synchronous.upper()
    in_memory = settings.in_memory

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if not in_memory:
                _set_wal(cursor, settings.busy_timeout)
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _set_wal(cursor: Any, patience: float) -> None:
    """Switch to WAL; the switch can fail at once with "locked" while another connection
    is opening the same new file, so try again until ``patience`` seconds have passed.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
