"""Fast insertion of many jobs: PostgreSQL ``COPY``, DBAPI ``executemany`` elsewhere.

Rows without a unique key skip SQLAlchemy's per-row parameter processing:
on PostgreSQL a small batch is one ``INSERT ... SELECT FROM unnest(...)``
statement that also sends the wake-up ``NOTIFY``, and a large one is
streamed with binary ``COPY ... FROM STDIN`` (psycopg 3);
on SQLite and MySQL/MariaDB they go through the DBAPI cursor's
``executemany`` (which PyMySQL turns into multi-row inserts). Both run
on the caller's connection, inside its transaction.

A row whose id is already in the jobs table is skipped (the enqueue of an
unfinished job's id is a repeat): the inserts say ``ON CONFLICT (id) DO
NOTHING`` (MySQL: ``ON DUPLICATE KEY UPDATE id = id``). ``COPY`` cannot skip
rows, so it runs under a savepoint; if it meets a stored id, the batch is
inserted again with ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from jobs_database.prepared import PreparedStatement, text, to_str, usable
from jobs_database.raw import dbapi_errors
from jobs_database.schema import Tables

BytesBinaryDumper: Any
PsycopgConnection: Any
UniqueViolation: Any
try:
    from psycopg import Connection as PsycopgConnection
    from psycopg.errors import UniqueViolation
    from psycopg.types.string import BytesBinaryDumper
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    BytesBinaryDumper = PsycopgConnection = None
    UniqueViolation = ()

COLUMNS = ("id", "queue", "priority", "visible_at", "state", "created_at", "body")
#: PostgreSQL types of :data:`COLUMNS`, for binary ``COPY``.
PG_TYPES = ("varchar", "varchar", "int4", "float8", "int2", "float8", "bytea")
#: Up to this many rows, PostgreSQL inserts with one ``INSERT ... SELECT unnest(...)``
#: that also sends the ``NOTIFY``: one round trip. Larger batches use ``COPY``.
SMALL_BATCH = 64


class BulkInsert:
    """Inserts rows (tuples of the values of :attr:`columns`, in order) into the jobs table."""

    def __init__(self, backend: str, tables: Tables, *, tenant: bool = False) -> None:
        self.backend = backend
        #: The columns of a row, in order: :data:`COLUMNS`, then ``tenant`` for rows of tenants.
        self.columns = (*COLUMNS, "tenant") if tenant else COLUMNS
        self.types = (*PG_TYPES, "varchar") if tenant else PG_TYPES
        columns, types = self.columns, self.types
        names = ", ".join(columns)
        table = tables.jobs.name
        if backend == "postgresql":
            self._sql = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
            arrays = ", ".join(f"%({c})s::{t}[]" for c, t in zip(columns, types, strict=True))
            notify = (
                "ON CONFLICT (id) DO NOTHING RETURNING queue, visible_at) "
                "SELECT q.queue, pg_notify(%(channel)s, q.queue) FROM "
                "(SELECT DISTINCT queue FROM ins WHERE %(notify)s AND visible_at <= %(now)s) AS q"
            )
            self._small = (
                f"WITH ins AS (INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {notify}"
            )
            values = ", ".join(f"%({c})s" for c in columns)
            self._single = f"WITH ins AS (INSERT INTO {table} ({names}) VALUES ({values}) {notify}"
            # One job, the latency path: the same statement run straight on libpq.
            single = self._single
            for number, name in enumerate((*columns, "channel", "notify", "now"), 1):
                single = single.replace(f"%({name})s", f"${number}")
            name = "enqueue_tenant" if tenant else "enqueue"
            self._single_prepared = PreparedStatement(name, single, (*types, "text", "bool", "float8"))
        else:
            mark = "?" if backend == "sqlite" else "%s"
            skip = "ON CONFLICT (id) DO NOTHING" if backend == "sqlite" else "ON DUPLICATE KEY UPDATE id = id"
            self._sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(columns))}) {skip}"

    def insert(
        self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify_channel: str | None, now: float
    ) -> set[str]:
        """Insert ``rows`` on ``conn`` (in its open transaction, if any).

        Returns the queues already woken with ``NOTIFY`` on ``notify_channel``
        (PostgreSQL, small batches: the insert and the notification are one
        statement, atomic even without a transaction).
        """
        with dbapi_errors(conn, self._sql):
            return self._insert(conn, rows, notify_channel, now)

    def _insert(
        self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]], notify_channel: str | None, now: float
    ) -> set[str]:
        dbapi: Any = conn.connection.dbapi_connection
        if self.backend == "postgresql" and len(rows) == 1 and usable(dbapi):
            row = rows[0]
            values = [None if v is None else v if type(v) is bytes else text(v) for v in row]
            values += [(notify_channel or "").encode(), b"t" if notify_channel else b"f", text(now)]
            return {to_str(r[0]) for r in self._single_prepared.run(dbapi, values)}
        if self.backend == "postgresql" and len(rows) <= SMALL_BATCH:
            single = len(rows) == 1
            columns = rows[0] if single else [list(column) for column in zip(*rows, strict=True)]
            params: dict[str, Any] = dict(zip(self.columns, columns, strict=True))
            params.update(channel=notify_channel or "", notify=notify_channel is not None, now=now)
            with dbapi.cursor() as cursor:
                cursor.execute(self._single if single else self._small, params)
                notified: set[str] = {row[0] for row in cursor.fetchall()}
            return notified
        if self.backend == "postgresql" and not isinstance(dbapi, PsycopgConnection):
            # An async driver's connection seen through SQLAlchemy's adapter (a caller's
            # AsyncConnection, via run_sync) has no COPY: insert in small batches instead.
            woken: set[str] = set()
            for start in range(0, len(rows), SMALL_BATCH):
                woken |= self._insert(conn, rows[start : start + SMALL_BATCH], notify_channel, now)
            return woken
        if self.backend == "postgresql":
            self._copy_or_insert(conn, rows, notify_channel, now)
            return set()
        cursor = dbapi.cursor()
        try:
            cursor.executemany(self._sql, rows)
        finally:
            cursor.close()
        return set()

    def stream(self, conn: sa.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """PostgreSQL: ``COPY`` ``rows`` as the iterable yields them, sending as it goes.

        The server stores the rows already sent while the iterable builds the
        next ones. An exception from the iterable aborts the ``COPY`` (and so the
        transaction) and propagates.
        """
        with dbapi_errors(conn, self._sql):
            self._copy_or_insert(conn, rows, None, 0.0)

    def _copy_or_insert(
        self, conn: sa.Connection, rows: Iterable[tuple[Any, ...]], notify_channel: str | None, now: float
    ) -> None:
        """``COPY`` ``rows`` under a savepoint; if one repeats a stored id, insert them skipping it."""
        dbapi: Any = conn.connection.dbapi_connection
        sent: list[tuple[Any, ...]] = []

        def keep(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
            for row in rows:
                sent.append(row)
                yield row

        kept = keep(rows)
        with dbapi.cursor() as cursor:
            cursor.execute("SAVEPOINT jobs_copy")
            try:
                self._copy(dbapi, kept)
            except UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT jobs_copy")
            else:
                cursor.execute("RELEASE SAVEPOINT jobs_copy")
                return
        for _ in kept:  # the rows the COPY had not read yet
            pass
        for start in range(0, len(sent), SMALL_BATCH):
            self._insert(conn, sent[start : start + SMALL_BATCH], notify_channel, now)

    def _copy(self, dbapi: Any, rows: Iterable[tuple[Any, ...]]) -> None:
        with dbapi.cursor() as cursor:
            # For "bytea", set_types would pick the last dumper registered for
            # the type: psycopg's DB-API ``Binary`` wrapper, in Python. The plain
            # bytes dumper (in C with psycopg[binary]) does the same, faster.
            cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
            with cursor.copy(self._sql) as copy:
                copy.set_types(list(self.types))
                write = copy.write_row
                for row in rows:
                    write(row)
