"""Fast insertion of many jobs: PostgreSQL ``COPY``, DBAPI ``executemany`` elsewhere.

Rows without a unique key skip SQLAlchemy's per-row parameter processing:
on PostgreSQL they are streamed with binary ``COPY ... FROM STDIN`` (psycopg 3),
on SQLite and MySQL/MariaDB they go through the DBAPI cursor's
``executemany`` (which PyMySQL turns into multi-row inserts). Both run
on the caller's connection, inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from jobs_database.schema import Tables

COLUMNS = ("id", "queue", "priority", "visible_at", "state", "created_at", "body")
#: PostgreSQL types of :data:`COLUMNS`, for binary ``COPY``.
PG_TYPES = ("varchar", "varchar", "int4", "float8", "int2", "float8", "bytea")


class BulkInsert:
    """Inserts rows (dicts with at least :data:`COLUMNS`) into the jobs table."""

    def __init__(self, backend: str, tables: Tables) -> None:
        self.backend = backend
        names = ", ".join(COLUMNS)
        table = tables.jobs.name
        if backend == "postgresql":
            self._sql = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
        else:
            mark = "?" if backend == "sqlite" else "%s"
            self._sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(COLUMNS))})"

    def insert(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` on ``conn`` (in its open transaction)."""
        values = [tuple(row[c] for c in COLUMNS) for row in rows]
        dbapi: Any = conn.connection.dbapi_connection
        cursor = dbapi.cursor()
        try:
            if self.backend == "postgresql":
                with cursor.copy(self._sql) as copy:
                    copy.set_types(list(PG_TYPES))
                    for value in values:
                        copy.write_row(value)
            else:
                cursor.executemany(self._sql, values)
        finally:
            cursor.close()
