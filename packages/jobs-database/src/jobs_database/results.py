"""Status, results, progress and cancellation of the database driver.

:class:`StatusOperations` is a mixin of :class:`~jobs_database.driver.DatabaseDriver`
(``Capability.STATUS``, ``PROGRESS`` and ``CANCEL``). A job's status is read
from its row in the jobs table while it is unfinished (with the ``running``
table's worker, progress and cancellation request for that row), else from
the ``results`` table (succeeded and cancelled jobs, kept ``results_ttl``
seconds) or the failed store, whichever finished last.

Results are written with the ack: on PostgreSQL in the ack's own statement
(one more ``INSERT`` in its ``WITH``), elsewhere in its transaction.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from jobs_core.errors import MalformedMessage
from jobs_core.message import Delivery, Message
from jobs_core.serializer import dumps, loads
from jobs_core.status import (
    CANCEL_FINISHED,
    CANCEL_NOT_FOUND,
    CANCEL_REMOVED,
    CANCEL_REQUESTED,
    CANCELLED,
    FAILED,
    SUCCEEDED,
    JobStatus,
    Progress,
    live_status,
    progress_from_json,
    progress_json,
)
from jobs_core.workflow_state import WORKFLOW_HEADER

from jobs_database.claims import Acker
from jobs_database.driver_parts import DriverParts
from jobs_database.raw import dbapi_errors, fetch_all
from jobs_database.schema import RESERVED, RESULT_CANCELLED, RESULT_SUCCEEDED
from jobs_database.settings import DatabaseSettings

T = TypeVar("T")

#: Seconds between two deletions of results older than ``results_ttl`` by one driver.
SWEEP_INTERVAL = 60.0

_STATES = {RESULT_SUCCEEDED: SUCCEEDED, RESULT_CANCELLED: CANCELLED}


class StatusOperations(DriverParts):
    """``job_status``, ``ack_results``, ``save_progress``, ``cancel`` and friends, in SQL."""

    settings: DatabaseSettings
    results_ttl: float
    _acker: Acker
    _owned: tuple[Any, ...]
    _results_swept_at: float = 0.0
    _status_statements: dict[str, str] | None = None
    _sqlite_cache: tuple[str, str, str] | None = None

    def _owned_params(self, delivery: Delivery) -> dict[str, Any]:
        raise NotImplementedError

    def _ack_workflow_jobs(
        self, deliveries: Sequence[Delivery], results: dict[str, str | None] | None = None
    ) -> None:
        raise NotImplementedError

    def _ack_watched(
        self, deliveries: Sequence[Delivery], results: dict[str, str | None] | None = None
    ) -> None:
        raise NotImplementedError

    # -- status ---------------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """From the jobs row, else the latest of the kept result and the failed entry."""
        t = self.tables
        jobs, results, failed, running = t.jobs, t.results, t.failed, t.running

        def read(conn: sa.Connection) -> JobStatus | None:
            now = time.time()
            row = conn.execute(
                sa.select(
                    jobs.c.seq, jobs.c.queue, jobs.c.state, jobs.c.visible_at, jobs.c.lease_until, jobs.c.body
                ).where(jobs.c.id == job_id)
            ).first()
            if row is not None:
                extra = conn.execute(
                    sa.select(running.c.worker, running.c.progress, running.c.cancel).where(
                        running.c.id == job_id, running.c.job_seq == row.seq
                    )
                ).first()
                return _live(job_id, row, extra, now)
            found: list[JobStatus] = []
            if self.results_ttl > 0:
                kept = conn.execute(
                    sa.select(results).where(
                        results.c.id == job_id, results.c.finished_at >= now - self.results_ttl
                    )
                ).first()
                if kept is not None:
                    found.append(kept_status(kept))
            entry = conn.execute(
                sa.select(*failed_columns(failed))
                .where(failed.c.id == job_id)
                .order_by(failed.c.seq.desc())
                .limit(1)
            ).first()
            if entry is not None:
                found.append(failed_status(entry))
            return max(found, key=lambda s: s.finished_at or 0.0) if found else None

        return self._run("reading a job's status", read)

    # -- results ----------------------------------------------------------------

    def ack_results(self, deliveries: Sequence[Delivery], results: Sequence[str | None]) -> None:
        """Ack a batch and keep each result, in the ack's statement (PostgreSQL) or transaction."""
        self._ack_results(deliveries, results, ())

    def _ack_results(
        self, deliveries: Sequence[Delivery], results: Sequence[str | None], slots: Sequence[tuple[str, str]]
    ) -> None:
        """:meth:`ack_results`, deleting the rows of ``slots`` in the ack's transaction
        (SQLite, MySQL/MariaDB) or in a statement after it (PostgreSQL).
        """
        if not deliveries:
            self.release_slots(slots)
            return
        by_queue: dict[str, list[tuple[Delivery, str | None]]] = defaultdict(list)
        flows: dict[str, str | None] = {}
        flow_deliveries: list[Delivery] = []
        for delivery, result in zip(deliveries, results, strict=True):
            if WORKFLOW_HEADER in delivery.message.headers:
                # Counted in its workflow in the transaction that removes it, result included.
                flows[delivery.receipt] = result
                flow_deliveries.append(delivery)
            else:
                by_queue[delivery.handle[1]].append((delivery, result))
        if flow_deliveries:
            self._ack_workflow_jobs(flow_deliveries, flows)
        if not by_queue:
            self.release_slots(slots)
            return
        if self.backend == "postgresql":
            self._ack_results_pg(by_queue)
            self.release_slots(slots)
        else:
            self._ack_results_tx(by_queue, slots)
        now = time.time()
        if now - self._results_swept_at >= SWEEP_INTERVAL:
            self._results_swept_at = now
            self._sweep(now - self.results_ttl)

    def _keep_results(
        self, conn: sa.Connection, deliveries: Sequence[Delivery], results: dict[str, str | None], now: float
    ) -> None:
        """Keep the results of ``deliveries`` (just deleted in ``conn``'s transaction) as succeeded."""
        if not deliveries or self.results_ttl <= 0:
            return
        results_table = self.tables.results
        if self.backend == "postgresql":
            # One statement (one round trip): the latest run of an id replaces an earlier one's.
            rows = {
                d.id: {
                    "id": d.id,
                    "queue": d.handle[1],
                    "name": d.message.name[:255],
                    "attempts": d.message.attempts + 1,
                    "result": results.get(d.receipt),
                }
                for d in deliveries
            }
            fetch_all(conn, self._statements()["keep"], {"rows": dumps(list(rows.values())), "now": now})
            return
        # An earlier run of an id dispatched again after it finished.
        conn.execute(sa.delete(results_table).where(results_table.c.id.in_([d.id for d in deliveries])))
        conn.execute(
            sa.insert(results_table),
            [
                {
                    "id": d.id,
                    "queue": d.handle[1],
                    "name": d.message.name[:255],
                    "state": RESULT_SUCCEEDED,
                    "attempts": d.message.attempts + 1,
                    "result": results.get(d.receipt),
                    "finished_at": now,
                }
                for d in deliveries
            ],
        )

    def _sweep(self, cutoff: float) -> None:
        results = self.tables.results
        self._run(
            "removing old results",
            lambda conn: conn.execute(sa.delete(results).where(results.c.finished_at < cutoff)),
        )

    def _statements(self) -> dict[str, str]:
        if self._status_statements is None:
            t = self.tables
            jobs, completed, results = t.jobs.name, t.completed.name, t.results.name
            keep = (
                f"INSERT INTO {results} (id, queue, name, state, attempts, result, finished_at) "
                f"SELECT d.id, %(queue)s, v.name, {RESULT_SUCCEEDED}, v.attempts, v.result, %(now)s FROM d "
                "JOIN json_to_recordset(%(rows)s::json) "
                "AS v(seq bigint, name text, attempts integer, result text) ON v.seq = d.seq "
                "ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, name = EXCLUDED.name, "
                "state = EXCLUDED.state, attempts = EXCLUDED.attempts, result = EXCLUDED.result, "
                "progress = NULL, finished_at = EXCLUDED.finished_at"
            )
            count = (
                f"INSERT INTO {completed} (queue, finished_at, count) "
                "SELECT %(queue)s, %(now)s, count(*) FROM d HAVING count(*) > 0"
            )
            self._status_statements = {
                "keep": (
                    f"INSERT INTO {results} (id, queue, name, state, attempts, result, finished_at) "
                    f"SELECT v.id, v.queue, v.name, {RESULT_SUCCEEDED}, v.attempts, v.result, %(now)s "
                    "FROM json_to_recordset(%(rows)s::json) "
                    "AS v(id text, queue text, name text, attempts integer, result text) "
                    "ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, name = EXCLUDED.name, "
                    "state = EXCLUDED.state, attempts = EXCLUDED.attempts, result = EXCLUDED.result, "
                    "progress = NULL, finished_at = EXCLUDED.finished_at"
                ),
                "ack": (
                    f"WITH d AS (DELETE FROM {jobs} WHERE ctid = ANY(%(ctids)s::tid[]) "
                    "AND receipt = ANY(%(receipts)s::varchar[]) AND watched IS NULL RETURNING seq, id), "
                    f"c AS ({count}), r AS ({keep}) SELECT seq FROM d"
                ),
                "ack_moved": (
                    f"WITH d AS (DELETE FROM {jobs} WHERE queue = %(queue)s AND priority = %(priority)s "
                    "AND visible_at = %(visible_at)s AND seq = %(seq)s AND receipt = %(receipt)s "
                    f"AND watched IS NULL RETURNING seq, id), c AS ({count}), r AS ({keep}) SELECT seq FROM d"
                ),
            }
        return self._status_statements

    def _ack_results_pg(self, by_queue: dict[str, list[tuple[Delivery, str | None]]]) -> None:
        statements = self._statements()

        def columns(group: Sequence[tuple[Delivery, str | None]]) -> dict[str, Any]:
            # One row per seq: a job whose lease ended and came back to this worker may be
            # in the batch twice, and one statement may not write one result row twice.
            rows = {
                d.handle[0]: {
                    "seq": d.handle[0],
                    "name": d.message.name[:255],
                    "attempts": d.message.attempts + 1,
                    "result": r,
                }
                for d, r in group
            }
            return {"rows": dumps(list(rows.values()))}

        def ack(conn: sa.Connection) -> list[tuple[Delivery, str | None]]:
            now = time.time()
            moved: list[tuple[Delivery, str | None]] = []
            for queue, group in by_queue.items():
                params = {
                    "ctids": "{" + ",".join(f'"{d.handle[4]}"' for d, _ in group) + "}",
                    "receipts": "{" + ",".join(d.receipt for d, _ in group) + "}",
                    "queue": queue,
                    "now": now,
                    **columns(group),
                }
                deleted = {row[0] for row in fetch_all(conn, statements["ack"], params)}
                moved += [item for item in group if item[0].handle[0] not in deleted]
            return moved

        moved = self._run("ack", ack, autocommit=True, relaxed=True)
        for item in moved:
            # Moved since the claim (a lease extension), or the lease was lost.
            delivery = item[0]
            seq, queue, priority, visible_at, _ = delivery.handle
            params = {
                "queue": queue,
                "priority": priority,
                "visible_at": visible_at,
                "seq": seq,
                "receipt": delivery.receipt,
                "now": time.time(),
                **columns([item]),
            }
            self._run(
                "ack",
                lambda conn, p=params: fetch_all(conn, statements["ack_moved"], p),  # type: ignore[misc]
                autocommit=True,
                relaxed=True,
            )
        if moved:  # watched jobs among them: counted in their workflow records
            self._ack_watched([d for d, _ in moved], {d.receipt: r for d, r in moved})

    def _sqlite_statements(self) -> tuple[str, str, str]:
        if self._sqlite_cache is not None:
            return self._sqlite_cache
        t = self.tables
        jobs, completed, results = t.jobs.name, t.completed.name, t.results.name
        self._sqlite_cache = (
            f"DELETE FROM {jobs} WHERE seq IN (SELECT value FROM json_each(?)) "
            "AND receipt IN (SELECT value FROM json_each(?)) AND watched IS NULL RETURNING seq",
            f"INSERT INTO {completed} (queue, finished_at, count) VALUES (?, ?, ?)",
            f"INSERT OR REPLACE INTO {results} (id, queue, name, state, attempts, result, finished_at) "
            f"VALUES (?, ?, ?, {RESULT_SUCCEEDED}, ?, ?, ?)",
        )
        return self._sqlite_cache

    def _ack_results_tx(
        self, by_queue: dict[str, list[tuple[Delivery, str | None]]], slots: Sequence[tuple[str, str]]
    ) -> None:
        """MySQL and MariaDB: the batch ack, then the results of the rows it deleted, in one transaction.

        The results travel as one JSON text unpacked by ``JSON_TABLE`` (MySQL 8,
        MariaDB 10.6): one value for PyMySQL to escape instead of six per job.
        """
        if self.backend == "sqlite":
            self._ack_results_sqlite(by_queue, slots)
            return
        jobs, results = self.tables.jobs.name, self.tables.results.name
        keep = (
            f"REPLACE INTO {results} (id, queue, name, state, attempts, result, finished_at) "
            f"SELECT j.id, %(queue)s, j.name, {RESULT_SUCCEEDED}, j.attempts, j.result, %(now)s "
            "FROM JSON_TABLE(%(rows)s, '$[*]' COLUMNS (id VARCHAR(64) PATH '$[0]', "
            "name VARCHAR(255) PATH '$[1]', attempts INT PATH '$[2]', result LONGTEXT PATH '$[3]')) AS j"
        )

        completed = self.tables.completed.name
        count = f"INSERT INTO {completed} (queue, finished_at, count) VALUES (%(queue)s, %(now)s, %(count)s)"

        def mariadb_ack(conn: sa.Connection, queue: str, group: Sequence[Delivery], now: float) -> set[int]:
            """MariaDB's ``DELETE ... RETURNING``: the deleted rows, without another read."""
            by_token: dict[str, list[int]] = {}
            for d in group:
                token, _, tail = d.receipt.rpartition(":")
                if tail == str(d.handle[0]):  # anything else cannot be a lease of this row
                    by_token.setdefault(token + ":", []).append(int(d.handle[0]))
            gone: set[int] = set()
            for token, seqs in by_token.items():
                sql = (
                    f"DELETE FROM {jobs} WHERE seq IN ({','.join(map(str, seqs))}) "
                    "AND receipt = CONCAT(%(token)s, seq) AND watched IS NULL RETURNING seq"
                )
                gone.update(int(row[0]) for row in fetch_all(conn, sql, {"token": token}))
            if gone:
                fetch_all(conn, count, {"queue": queue, "now": now, "count": len(gone)})
            return gone

        def ack(conn: sa.Connection) -> list[tuple[Delivery, str | None]]:
            now = time.time()
            mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
            left_over: list[tuple[Delivery, str | None]] = []
            for queue, group in by_queue.items():
                if mariadb:
                    gone = mariadb_ack(conn, queue, [d for d, _ in group], now)
                else:  # MySQL has no DELETE ... RETURNING: read which rows are left
                    handles = [d.handle for d, _ in group]
                    self._acker.ack(conn, queue, handles, [d.receipt for d, _ in group], now)
                    listed = ",".join(str(int(h[0])) for h in handles)
                    left = {
                        r[0] for r in fetch_all(conn, f"SELECT seq FROM {jobs} WHERE seq IN ({listed})", {})
                    }
                    gone = {int(h[0]) for h in handles} - left
                left_over += [item for item in group if int(item[0].handle[0]) not in gone]
                rows = [
                    [d.message.id, d.message.name[:255], d.message.attempts + 1, result]
                    for d, result in group
                    if d.handle[0] in gone
                ]
                if rows:
                    fetch_all(conn, keep, {"queue": queue, "now": now, "rows": dumps(rows)})
            if slots:
                conn.execute(self._slots_delete(slots))
            return left_over

        left_over = self._run("ack", ack)
        if left_over:  # watched jobs among them: counted in their workflow records
            self._ack_watched([d for d, _ in left_over], {d.receipt: r for d, r in left_over})

    def _ack_results_sqlite(
        self, by_queue: dict[str, list[tuple[Delivery, str | None]]], slots: Sequence[tuple[str, str]]
    ) -> None:
        """SQLite: one ``DELETE ... RETURNING``, one count and one ``executemany`` of the results per queue.

        Straight on the DBAPI cursor, in the driver's transaction: SQLite runs in
        this process, so what the ack costs is mostly Python, and the cursor's
        ``executemany`` inserts a row for about a microsecond of it.
        """
        delete, count, keep = self._sqlite_statements()

        def ack(conn: sa.Connection) -> list[tuple[Delivery, str | None]]:
            now = time.time()
            left_over: list[tuple[Delivery, str | None]] = []
            with dbapi_errors(conn, delete):
                cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    for queue, group in by_queue.items():
                        seqs = dumps([d.handle[0] for d, _ in group])
                        cursor.execute(delete, (seqs, dumps([d.receipt for d, _ in group])))
                        gone = {row[0] for row in cursor.fetchall()}
                        if len(gone) < len(group):
                            left_over += [item for item in group if item[0].handle[0] not in gone]
                        if not gone:
                            continue
                        cursor.execute(count, (queue, now, len(gone)))
                        cursor.executemany(
                            keep,
                            [
                                (
                                    d.message.id,
                                    queue,
                                    d.message.name[:255],
                                    d.message.attempts + 1,
                                    result,
                                    now,
                                )
                                for d, result in group
                                if d.handle[0] in gone
                            ],
                        )
                finally:
                    cursor.close()
            if slots:
                conn.execute(self._slots_delete(slots))
            return left_over

        left_over = self._run("ack", ack)
        if left_over:  # watched jobs among them: counted in their workflow records
            self._ack_watched([d for d, _ in left_over], {d.receipt: r for d, r in left_over})

    # -- progress -----------------------------------------------------------------

    def _set_running(self, conn: sa.Connection, job_id: str, seq: int, values: dict[str, Any]) -> None:
        """Update or create the ``running`` row of ``job_id`` for the jobs row ``seq``."""
        running = self.tables.running
        now = time.time()
        where = (running.c.id == job_id, running.c.job_seq == seq)
        if conn.execute(sa.update(running).where(*where).values(updated_at=now, **values)).rowcount:
            return
        conn.execute(sa.delete(running).where(running.c.id == job_id))  # an older run's row
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.insert(running).values(
                        id=job_id, job_seq=seq, updated_at=now, **{"cancel": False, "worker": None, **values}
                    )
                )
        except sa.exc.IntegrityError:  # written meanwhile by another process (a cancel, a progress)
            conn.execute(
                sa.update(running).where(running.c.id == job_id).values(job_seq=seq, updated_at=now, **values)
            )

    def save_progress(self, delivery: Delivery, progress: Progress | None, worker: str) -> None:
        """Record the worker and the progress of a held delivery; ignored if the lease was lost."""
        jobs = self.tables.jobs
        owned = sa.select(jobs.c.id).where(*self._owned)
        values: dict[str, Any] = {"worker": worker[:200]}
        if progress is not None:
            values["progress"] = progress_json(progress)

        def save(conn: sa.Connection) -> None:
            row = conn.execute(owned, self._owned_params(delivery)).first()
            if row is not None:
                self._set_running(conn, str(row[0]), int(delivery.handle[0]), values)

        self._run("saving progress", save)

    # -- cancellation -------------------------------------------------------------

    def cancel(self, job_id: str) -> str:
        """Delete a waiting job (kept as cancelled), or flag a running one for its worker."""
        t = self.tables
        jobs, results, failed, running = t.jobs, t.results, t.failed, t.running
        store_of: list[Any] = []

        def cancel(conn: sa.Connection) -> str:
            now = time.time()
            query = sa.select(jobs.c.seq, jobs.c.queue, jobs.c.state, jobs.c.lease_until, jobs.c.body)
            if self.backend != "sqlite":
                query = query.with_for_update()
            row = conn.execute(query.where(jobs.c.id == job_id)).first()
            if row is None:
                cutoff = now - self.results_ttl
                kept = conn.execute(
                    sa.select(results.c.id).where(results.c.id == job_id, results.c.finished_at >= cutoff)
                ).first()
                gone = conn.execute(sa.select(failed.c.seq).where(failed.c.id == job_id)).first()
                return CANCEL_FINISHED if kept is not None or gone is not None else CANCEL_NOT_FOUND
            if row.state == RESERVED and (row.lease_until or 0.0) > now:
                self._set_running(conn, job_id, int(row.seq), {"cancel": True})
                return CANCEL_REQUESTED
            conn.execute(sa.delete(jobs).where(jobs.c.seq == row.seq))
            conn.execute(sa.delete(running).where(running.c.id == job_id))
            message = _decode(row.body)
            self._keep_cancelled(conn, job_id, row.queue, message=message, extra=0, now=now)
            counted = None if message is None else self._flow_message(conn, message)
            if counted is not None:
                # Counted in its workflow in the transaction that removes it.
                self._cancel_in_workflow(conn, counted, store_of)
            return CANCEL_REMOVED

        answer = self._run("cancel", cancel, after_commit=self._after_cancel_in_workflow(store_of))
        self._notify_after_workflow(store_of)
        return answer

    def _keep_cancelled(
        self, conn: sa.Connection, job_id: str, queue: str, *, message: Message | None, extra: int, now: float
    ) -> None:
        if self.results_ttl <= 0:
            return
        results = self.tables.results
        conn.execute(sa.delete(results).where(results.c.id == job_id))  # an earlier run of the id
        conn.execute(
            sa.insert(results).values(
                id=job_id,
                queue=queue,
                name="" if message is None else message.name[:255],
                state=RESULT_CANCELLED,
                attempts=(0 if message is None else message.attempts) + extra,
                result=None,
                finished_at=now,
            )
        )

    def cancel_requested(self, deliveries: Sequence[Delivery]) -> set[str]:
        """One read of the ``running`` table for the held deliveries' ids."""
        if not deliveries:
            return set()
        running = self.tables.running
        seqs = {d.id: d.handle[0] for d in deliveries}

        def read(conn: sa.Connection) -> set[str]:
            found: set[str] = set()
            ids = list(seqs)
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(running.c.id, running.c.job_seq).where(
                        running.c.cancel.is_(True), running.c.id.in_(ids[start : start + 500])
                    )
                ).all()
                found.update(str(r[0]) for r in rows if seqs.get(str(r[0])) == r[1])
            return found

        return self._run("reading cancellation requests", read)

    def ack_cancelled(self, delivery: Delivery) -> None:
        """Delete the held job and keep it as cancelled."""
        jobs, running = self.tables.jobs, self.tables.running
        store_of: list[Any] = []

        def finish(conn: sa.Connection) -> None:
            gone = conn.execute(sa.delete(jobs).where(*self._owned), self._owned_params(delivery)).rowcount
            if not gone:
                return
            conn.execute(sa.delete(running).where(running.c.id == delivery.id))
            self._keep_cancelled(
                conn, delivery.id, delivery.handle[1], message=delivery.message, extra=1, now=time.time()
            )
            counted = self._flow_message(conn, delivery.message)
            if counted is not None:
                self._cancel_in_workflow(conn, counted, store_of)

        self._run("finishing a cancelled job", finish, after_commit=self._after_cancel_in_workflow(store_of))
        self._notify_after_workflow(store_of)

    def _prune_status(self, conn: sa.Connection, cutoff: float) -> None:
        """Within ``prune``: results finished before ``cutoff``, and ``running`` rows of finished jobs."""
        t = self.tables
        conn.execute(sa.delete(t.results).where(t.results.c.finished_at < cutoff))
        stale = sa.select(t.jobs.c.seq).where(t.jobs.c.seq == t.running.c.job_seq)
        conn.execute(sa.delete(t.running).where(~stale.exists()))


def failed_columns(failed: sa.Table) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns of the failed store that :func:`failed_status` reads."""
    c = failed.c
    return (c.id, c.queue, c.name, c.attempts, c.error, c.failed_at, c.body)


def failed_status(row: Any) -> JobStatus:
    """The status of a job in the failed store, from a row of :func:`failed_columns`."""
    message = _decode(row.body)
    return JobStatus(
        id=row.id,
        state=FAILED,
        queue=row.queue,
        name=row.name,
        attempts=int(row.attempts),
        error=row.error,
        finished_at=float(row.failed_at),
        payload=None if message is None else message.payload,
    )


def kept_status(row: Any) -> JobStatus:
    """The status of a succeeded or cancelled job, from its row of the ``results`` table."""
    return JobStatus(
        id=row.id,
        state=_STATES.get(int(row.state), SUCCEEDED),
        queue=row.queue,
        name=row.name,
        attempts=int(row.attempts),
        progress=progress_from_json(row.progress),
        result=None if row.result is None else loads(row.result),
        finished_at=float(row.finished_at),
    )


def _decode(body: bytes | None) -> Message | None:
    try:
        return Message.decode(bytes(body or b""))
    except MalformedMessage:
        return None


def _live(job_id: str, row: Any, extra: Any, now: float) -> JobStatus:
    return live_status(
        job_id,
        row.queue,
        row.body,
        reserved=row.state == RESERVED,
        available_at=float(row.visible_at),
        lease_expires_at=None if row.lease_until is None else float(row.lease_until),
        now=now,
        worker=None if extra is None else extra.worker,
        progress=None if extra is None else progress_from_json(extra.progress),
        cancel_requested=bool(extra is not None and extra.cancel),
    )
