"""The claim: one statement (or one short transaction) per reserved batch.

Each backend leases up to ``limit`` due rows of one queue, highest priority
first, then earliest ``visible_at``, then enqueue order, and returns
``(seq, receipt, body)`` per row. The receipt is a per-batch token followed by
the row's ``seq``, so it is unique to this lease of this row.

* PostgreSQL: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``.
* SQLite: ``UPDATE ... WHERE seq IN (SELECT ... LIMIT n) RETURNING`` inside
  ``BEGIN IMMEDIATE`` (SQLite serialises writers; there are no row locks).
* MySQL / MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``UPDATE ...
  WHERE seq IN (...)`` in one ``READ COMMITTED`` transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from jobs_database.schema import RESERVED, Tables

Row = tuple[int, str, bytes]


class Claimer:
    """Builds and runs the claim statement of one backend."""

    def __init__(self, backend: str, tables: Tables) -> None:
        self.backend = backend
        jobs = tables.jobs.name
        pick = (
            f"SELECT seq FROM {jobs} WHERE queue = :queue AND visible_at <= :now "
            "ORDER BY priority DESC, visible_at, seq LIMIT :limit"
        )
        if backend == "postgresql":
            self._claim = sa.text(
                f"UPDATE {jobs} AS j SET state = {RESERVED}, receipt = :token || j.seq::text, "
                f"visible_at = :until FROM ({pick} FOR UPDATE SKIP LOCKED) AS c "
                "WHERE j.seq = c.seq RETURNING j.seq, j.receipt, j.body"
            )
        elif backend == "sqlite":
            self._claim = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = :token || seq, visible_at = :until "
                f"WHERE seq IN ({pick}) RETURNING seq, receipt, body"
            )
        else:
            self._select = sa.text(
                f"SELECT seq, body FROM {jobs} WHERE queue = :queue AND visible_at <= :now "
                "ORDER BY priority DESC, visible_at, seq LIMIT :limit FOR UPDATE SKIP LOCKED"
            )
            self._update = sa.text(
                f"UPDATE {jobs} SET state = {RESERVED}, receipt = CONCAT(:token, seq), visible_at = :until "
                "WHERE seq IN :seqs"
            ).bindparams(sa.bindparam("seqs", expanding=True))

    def claim(
        self, conn: sa.Connection, queue: str, *, limit: int, now: float, until: float, token: str
    ) -> Sequence[Row]:
        """Lease up to ``limit`` rows of ``queue`` in the caller's transaction."""
        params = {"queue": queue, "now": now, "until": until, "token": token, "limit": limit}
        if self.backend != "mysql":
            rows = conn.execute(self._claim, params).all()
            return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]
        picked = conn.execute(self._select, params).all()
        if not picked:
            return []
        seqs = [int(r[0]) for r in picked]
        conn.execute(self._update, {"seqs": seqs, "until": until, "token": token})
        return [(int(r[0]), f"{token}{int(r[0])}", bytes(r[1])) for r in picked]
