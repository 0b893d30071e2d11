"""Jobs by state and workers seen recently, for the database driver.

:class:`ListingOperations` is a mixin of :class:`~jobs_database.driver.DatabaseDriver`
(``Capability.JOB_LISTING`` and ``WORKERS``). ``list_jobs`` reads waiting and
running jobs from the jobs table (with the ``running`` table's worker and
progress), succeeded and cancelled ones from the ``results`` table and failed
ones from the failed store. Worker records live in the ``workers`` table
(schema version 13): one row per worker, its description as JSON, replaced
every few seconds by the worker's beacon thread; rows not renewed for
``WORKER_EXPIRY`` seconds are deleted by the next write.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from jobs_core.message import validate_queue_name
from jobs_core.status import CANCELLED, DELAYED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStatus
from jobs_core.worker_records import WORKER_EXPIRY, WorkerRecord, records_from_json

from jobs_database.results import StatusOperations, _live, failed_columns, failed_status, kept_status
from jobs_database.schema import RESERVED, RESULT_CANCELLED, RESULT_SUCCEEDED, WAITING, worker_table

_RESULT_STATES = {SUCCEEDED: RESULT_SUCCEEDED, CANCELLED: RESULT_CANCELLED}


class ListingOperations(StatusOperations):
    """``list_jobs``, ``save_worker``, ``remove_worker`` and ``workers``, in SQL."""

    # -- jobs by state ----------------------------------------------------------

    def list_jobs(
        self, state: str, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobStatus]:
        """One indexed or ordered read of the table that holds jobs in ``state``."""
        if queue is not None:
            queue = validate_queue_name(queue)
        if state == FAILED:
            return self._list_failed(queue, limit, offset)
        if state in _RESULT_STATES:
            return self._list_results(state, queue, limit, offset)
        if state not in (QUEUED, DELAYED, RUNNING):
            return []
        t = self.tables
        jobs, running = t.jobs, t.running

        def read(conn: sa.Connection) -> list[JobStatus]:
            now = time.time()
            stmt = (
                sa.select(
                    jobs.c.id,
                    jobs.c.seq,
                    jobs.c.queue,
                    jobs.c.state,
                    jobs.c.visible_at,
                    jobs.c.lease_until,
                    jobs.c.body,
                    running.c.worker,
                    running.c.progress,
                    running.c.cancel,
                )
                .select_from(
                    jobs.outerjoin(
                        running, sa.and_(running.c.id == jobs.c.id, running.c.job_seq == jobs.c.seq)
                    )
                )
                .limit(limit)
                .offset(offset)
            )
            if queue is not None:
                stmt = stmt.where(jobs.c.queue == queue)
            if state == RUNNING:
                stmt = stmt.where(jobs.c.state == RESERVED, jobs.c.lease_until > now)
                stmt = stmt.order_by(jobs.c.lease_until, jobs.c.seq)
            elif state == DELAYED:
                stmt = stmt.where(jobs.c.state == WAITING, jobs.c.visible_at > now)
                stmt = stmt.order_by(jobs.c.visible_at, jobs.c.seq)
            else:
                stmt = stmt.where(
                    sa.or_(
                        sa.and_(jobs.c.state == WAITING, jobs.c.visible_at <= now),
                        sa.and_(jobs.c.state == RESERVED, jobs.c.lease_until <= now),
                    )
                )
                stmt = stmt.order_by(jobs.c.priority.desc(), jobs.c.visible_at, jobs.c.seq)
            rows = conn.execute(stmt).all()
            return [_live(row.id, row, row if row.cancel is not None else None, now) for row in rows]

        return self._run("listing jobs", read)

    def _list_results(self, state: str, queue: str | None, limit: int, offset: int) -> list[JobStatus]:
        if self.results_ttl <= 0:
            return []
        results = self.tables.results
        code = _RESULT_STATES[state]

        def read(conn: sa.Connection) -> list[JobStatus]:
            stmt = (
                sa.select(results)
                .where(results.c.state == code, results.c.finished_at >= time.time() - self.results_ttl)
                .order_by(results.c.finished_at.desc(), results.c.id)
                .limit(limit)
                .offset(offset)
            )
            if queue is not None:
                stmt = stmt.where(results.c.queue == queue)
            return [kept_status(row) for row in conn.execute(stmt).all()]

        return self._run("listing finished jobs", read)

    def _list_failed(self, queue: str | None, limit: int, offset: int) -> list[JobStatus]:
        failed = self.tables.failed
        stmt = sa.select(*failed_columns(failed)).order_by(failed.c.seq.desc()).limit(limit).offset(offset)
        if queue is not None:
            stmt = stmt.where(failed.c.queue == queue)
        rows = self._run("listing failed jobs", lambda conn: conn.execute(stmt).all())
        return [failed_status(row) for row in rows]

    # -- workers ------------------------------------------------------------------

    def _workers_table(self) -> sa.Table:
        return worker_table(self.tables)

    def save_worker(self, record: WorkerRecord) -> None:
        """Replace the worker's row (update, else insert) and delete stale rows, in one transaction."""
        table = self._workers_table()
        values: dict[str, Any] = {"last_seen": record.last_seen, "data": json.dumps(record.to_dict())}

        def save(conn: sa.Connection) -> None:
            conn.execute(sa.delete(table).where(table.c.last_seen < time.time() - WORKER_EXPIRY))
            if conn.execute(sa.update(table).where(table.c.id == record.id).values(**values)).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table).values(id=record.id, **values))
            except sa.exc.IntegrityError:  # inserted meanwhile: the same worker, written twice
                conn.execute(sa.update(table).where(table.c.id == record.id).values(**values))

        self._run("recording a worker", save)

    def remove_worker(self, worker_id: str) -> bool:
        """Delete the worker's row."""
        table = self._workers_table()
        stmt = sa.delete(table).where(table.c.id == worker_id)
        return bool(self._run("removing a worker", lambda conn: conn.execute(stmt).rowcount))

    def workers(self) -> list[WorkerRecord]:
        """The rows written within ``WORKER_EXPIRY`` seconds, oldest worker first."""
        table = self._workers_table()

        def read(conn: sa.Connection) -> list[Any]:
            stmt = sa.select(table.c.data).where(table.c.last_seen >= time.time() - WORKER_EXPIRY)
            return list(conn.execute(stmt).scalars())

        return records_from_json(self._run("listing workers", read))
