"""The hot path: the claim and the ack, one statement (or one short transaction) per batch.

Each backend leases up to ``limit`` due rows of one queue (waiting, or
reserved under a lease that has ended), highest priority first, then earliest
``visible_at``, then enqueue order, and returns
``(seq, receipt, body, priority, visible_at)`` per row. The claim writes only ``state``,
``receipt`` and ``lease_until``, none of them indexed, so PostgreSQL can
update the rows in place (HOT) and InnoDB and SQLite touch no index. The
receipt is a per-batch token followed by the row's ``seq``, so it is unique to
this lease of this row.

* PostgreSQL: ``UPDATE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... FOR UPDATE
  SKIP LOCKED)) RETURNING``: the rows are found in the claim index and
  updated by their physical address (the jobs table has no other index).
* SQLite: ``UPDATE ... WHERE seq IN (SELECT ... LIMIT n) RETURNING`` inside
  ``BEGIN IMMEDIATE`` (SQLite serialises writers; there are no row locks).
* MySQL / MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``UPDATE ...
  WHERE seq IN (...)`` in one ``READ COMMITTED`` transaction.

The ack deletes a batch of rows still leased under the given receipts and
records how many it deleted in the completed table: on PostgreSQL one
statement (a ``DELETE ... RETURNING`` inside an ``INSERT``, finding each row
by the claim index's key), elsewhere two in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from jobs_database.prepared import PreparedStatement, text, to_float, to_int, to_str, to_tid, usable
from jobs_database.raw import dbapi_errors, fetch_all
from jobs_database.schema import RESERVED, WAITING, Tables

#: What a claim returns per row: seq, receipt, body, priority, visible_at, and
#: (PostgreSQL) the physical address of the row as claimed.
Row = tuple[int, str, bytes, int, float, str | None]
#: A delivery's handle: seq, queue, priority, visible_at (the claim index's
#: key), and the row's address as claimed (PostgreSQL; ``None`` elsewhere).
Handle = tuple[int, str, int, float, str | None]


#: The claim's parameters, in the order of the prepared statement's ``$1, $2, ...``.
_CLAIM_PARAMS = ("queue", "now", "limit", "token", "until")


class _Statements:
    """Statements compiled once to the DBAPI's SQL for :func:`~jobs_database.raw.fetch_all`."""

    def __init__(self) -> None:
        self._compiled: dict[int, str] = {}

    def _raw(self, conn: sa.Connection, statement: sa.TextClause) -> str:
        sql = self._compiled.get(id(statement))
        if sql is None:
            sql = self._compiled[id(statement)] = str(statement.compile(dialect=conn.dialect))
        return sql


class Claimer(_Statements):
    """Builds and runs the claim statement of one backend."""

    def __init__(self, backend: str, tables: Tables) -> None:
        super().__init__()
        self.backend = backend
        jobs = tables.jobs.name
        pick = (
            f"SELECT seq FROM {jobs} WHERE queue = :queue AND visible_at <= :now "
            f"AND (state = {WAITING} OR lease_until < :now) "
            "ORDER BY priority DESC, visible_at, seq LIMIT :limit"
        )
        # One source's jobs (a tenant's; "": those without one), found in the tenant claim index.
        self._source = self._source_claim(jobs, pick, f"{tables.prefix}jobs_tenant")
        if backend == "postgresql":
            self._claim = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = :token || seq::text, "
                f"lease_until = :until WHERE ctid = ANY(ARRAY("
                f"{pick.replace('SELECT seq', 'SELECT ctid', 1)} FOR UPDATE SKIP LOCKED)) "
                "RETURNING seq, receipt, body, priority, visible_at, ctid"
            )
            # The same statement run straight on libpq (see jobs_database.prepared).
            sql = self._claim.text
            for number, name in enumerate(_CLAIM_PARAMS, 1):
                sql = sql.replace(f":{name}", f"${number}")
            self._prepared = PreparedStatement("claim", sql, ("varchar", "float8", "int8", "text", "float8"))
        elif backend == "sqlite":
            self._claim = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = :token || seq, lease_until = :until "
                f"WHERE seq IN ({pick}) RETURNING seq, receipt, body, priority, visible_at"
            )
        else:
            # The claim index, always: a plan that scans the table would lock
            # and skip rows it does not need.
            self._select = sa.text(
                pick.replace(
                    f"SELECT seq FROM {jobs}",
                    f"SELECT seq, body, priority, visible_at FROM {jobs} "
                    f"FORCE INDEX ({tables.prefix}jobs_claim)",
                    1,
                )
                + " FOR UPDATE SKIP LOCKED"
            )
            # Driver-level SQL with the (integer) seqs written inline: PyMySQL
            # would otherwise escape every element of the list in Python.
            self._update = (
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = CONCAT(%(token)s, seq), "
                "lease_until = %(until)s WHERE seq IN ({seqs})"
            )

    def _source_claim(self, jobs: str, pick: str, index: str) -> sa.TextClause:
        """The claim of one source of a queue with tenants."""
        picked = pick.replace("AND visible_at <= :now", "AND tenant = :tenant AND visible_at <= :now", 1)
        if self.backend == "postgresql":
            statement = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = :token || seq::text, "
                f"lease_until = :until WHERE ctid = ANY(ARRAY("
                f"{picked.replace('SELECT seq', 'SELECT ctid', 1)} FOR UPDATE SKIP LOCKED)) "
                "RETURNING seq, receipt, body, priority, visible_at, ctid"
            )
        elif self.backend == "sqlite":
            statement = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = :token || seq, lease_until = :until "
                f"WHERE seq IN ({picked}) RETURNING seq, receipt, body, priority, visible_at"
            )
        else:
            statement = sa.text(
                picked.replace(
                    f"SELECT seq FROM {jobs}",
                    f"SELECT seq, body, priority, visible_at FROM {jobs} FORCE INDEX ({index})",
                    1,
                )
                + " FOR UPDATE SKIP LOCKED"
            )
        return statement

    def claim_source(
        self,
        conn: sa.Connection,
        queue: str,
        tenant: str,
        *,
        limit: int,
        now: float,
        until: float,
        token: str,
    ) -> Sequence[Row]:
        """Lease up to ``limit`` rows of ``queue`` stored with ``tenant``."""
        statement = self._source
        params = {"queue": queue, "now": now, "until": until, "token": token, "limit": limit}
        params["tenant"] = tenant
        if self.backend == "postgresql":
            raw = fetch_all(conn, self._raw(conn, statement), params)
            return [(r[0], r[1], bytes(r[2]), r[3], r[4], str(r[5])) for r in raw]
        if self.backend == "sqlite":
            rows = conn.execute(statement, params).all()
            return [(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), None) for r in rows]
        return self._lease_picked(conn, fetch_all(conn, self._raw(conn, statement), params), until, token)

    def _lease_picked(
        self, conn: sa.Connection, picked: Sequence[Any], until: float, token: str
    ) -> list[Row]:
        """MySQL: lease the rows a ``SELECT ... FOR UPDATE`` picked."""
        if not picked:
            return []
        seqs = [int(r[0]) for r in picked]
        update = self._update.replace("{seqs}", ",".join(str(int(seq)) for seq in seqs))
        fetch_all(conn, update, {"until": until, "token": token})
        return [(int(r[0]), f"{token}{int(r[0])}", bytes(r[1]), int(r[2]), float(r[3]), None) for r in picked]

    @property
    def single_statement(self) -> bool:
        """Whether a claim is a single statement (so it may run in autocommit mode)."""
        return self.backend == "postgresql"

    def claim(
        self, conn: sa.Connection, queue: str, *, limit: int, now: float, until: float, token: str
    ) -> Sequence[Row]:
        """Lease up to ``limit`` rows of ``queue`` in the caller's transaction."""
        dbapi = conn.connection.dbapi_connection
        if self.backend == "postgresql" and usable(dbapi):
            values = (queue.encode(), text(now), text(limit), token.encode(), text(until))
            with dbapi_errors(conn, self._claim.text):
                got = self._prepared.run(dbapi, values)
            return [
                (to_int(r[0]), to_str(r[1]), r[2] or b"", to_int(r[3]), to_float(r[4]), to_tid(r[5]))
                for r in got
            ]
        params = {"queue": queue, "now": now, "until": until, "token": token, "limit": limit}
        if self.backend == "postgresql":
            raw = fetch_all(conn, self._raw(conn, self._claim), params)
            return [(r[0], r[1], bytes(r[2]), r[3], r[4], str(r[5])) for r in raw]
        if self.backend == "sqlite":
            rows = conn.execute(self._claim, params).all()
            return [(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), None) for r in rows]
        return self._lease_picked(conn, fetch_all(conn, self._raw(conn, self._select), params), until, token)


class Acker(_Statements):
    """Builds and runs the batch ack of one backend."""

    def __init__(self, backend: str, tables: Tables) -> None:
        super().__init__()
        self.backend = backend
        jobs, completed = tables.jobs.name, tables.completed.name
        if backend == "postgresql":
            # Each row by its address as claimed: no index needed. A row whose
            # lease was extended since has moved (an update writes a new
            # version); ack() reports it, and ack_moved() finds it by its
            # claim-index key instead.
            # A watched row (``after=`` waits for it) is left to the workflow path.
            ack = (
                f"WITH d AS (DELETE FROM {jobs} WHERE ctid = ANY(CAST(:ctids AS tid[])) "
                "AND receipt = ANY(CAST(:receipts AS varchar[])){watched} RETURNING seq), "
                f"c AS (INSERT INTO {completed} (queue, finished_at, count) "
                "SELECT :queue, :now, count(*) FROM d HAVING count(*) > 0) "
                "SELECT seq FROM d"
            )
            self._ack = sa.text(ack.replace("{watched}", " AND watched IS NULL"))
            self._ack_any = sa.text(ack.replace("{watched}", ""))
            self._ack_moved = sa.text(
                f"WITH d AS (DELETE FROM {jobs} WHERE queue = :queue AND priority = :priority "
                "AND visible_at = :visible_at AND seq = :seq AND receipt = :receipt "
                "AND watched IS NULL RETURNING 1) "
                f"INSERT INTO {completed} (queue, finished_at, count) "
                "SELECT :queue, :now, count(*) FROM d HAVING count(*) > 0"
            )
        elif backend == "sqlite":
            self._delete = sa.text(
                f"DELETE FROM {jobs} WHERE seq IN (SELECT value FROM json_each(:seqs)) "
                "AND receipt IN (SELECT value FROM json_each(:receipts)) AND watched IS NULL"
            )
        else:
            # Receipts are "<batch token><seq>": one token per claimed batch, the
            # (integer) seqs inline, so PyMySQL escapes one value per batch.
            self._delete_sql = (
                f"DELETE FROM {jobs} WHERE seq IN ({{seqs}}) AND receipt = CONCAT(%(token)s, seq) "
                "AND watched IS NULL"
            )
        if backend != "postgresql":
            self._count = sa.text(
                f"INSERT INTO {completed} (queue, finished_at, count) VALUES (:queue, :now, :count)"
            )

    @property
    def single_statement(self) -> bool:
        """Whether one ack is a single statement (so it may run in autocommit mode)."""
        return self.backend == "postgresql"

    def ack(  # noqa: PLR0917 (the hot path: positional is cheapest)
        self,
        conn: sa.Connection,
        queue: str,
        handles: list[Handle],
        receipts: list[str],
        now: float,
        plain: bool = True,
    ) -> list[int]:
        """Delete the rows of ``queue`` leased under ``receipts``; count them completed.

        A ``plain`` ack leaves watched rows (``jobs.watched``: a dispatch with
        ``after=`` waits for them) to the workflow path. Returns the indexes
        of the rows not deleted: PostgreSQL, those not found where they were
        claimed (moved since, watched, or no longer leased under that
        receipt), for :meth:`ack_moved`; elsewhere every index when fewer rows
        than asked were deleted (the caller looks for watched rows among them).
        """
        params: dict[str, object]
        seqs = [h[0] for h in handles]
        if self.backend == "postgresql":
            # Array literals as text: cheaper than adapting Python lists element
            # by element. Receipts are hex, ':' and digits, safe unquoted.
            params = {
                "ctids": "{" + ",".join(f'"{h[4]}"' for h in handles) + "}",
                "receipts": "{" + ",".join(receipts) + "}",
                "queue": queue,
                "now": now,
            }
            statement = self._ack if plain else self._ack_any
            deleted = {row[0] for row in fetch_all(conn, self._raw(conn, statement), params)}
            return [i for i, seq in enumerate(seqs) if seq not in deleted]
        if self.backend == "sqlite":
            params = {"seqs": json.dumps(seqs), "receipts": json.dumps(receipts)}
            done = conn.execute(self._delete, params).rowcount
        else:
            by_token: dict[str, list[int]] = {}
            for seq, receipt in zip(seqs, receipts, strict=True):
                token, _, tail = receipt.rpartition(":")
                if tail == str(seq):  # anything else cannot be a lease of this row
                    by_token.setdefault(token + ":", []).append(int(seq))
            done = 0
            for token, group in by_token.items():
                sql = self._delete_sql.replace("{seqs}", ",".join(map(str, group)))
                done += conn.exec_driver_sql(sql, {"token": token}).rowcount
        if done:
            conn.execute(self._count, {"queue": queue, "now": now, "count": done})
        return [] if done >= len(seqs) else list(range(len(seqs)))

    def ack_moved(self, conn: sa.Connection, handle: Handle, receipt: str, now: float) -> None:
        """PostgreSQL: delete one row by its claim-index key, if still leased under ``receipt``."""
        seq, queue, priority, visible_at, _ = handle
        params = {
            "queue": queue,
            "priority": priority,
            "visible_at": visible_at,
            "seq": seq,
            "receipt": receipt,
            "now": now,
        }
        fetch_all(conn, self._raw(conn, self._ack_moved), params)
