"""Administration and schedules of the database driver: stats, the failed store,
purge, prune, and persisted schedules with once-per-tick claims.

:class:`AdminOperations` is a mixin of :class:`~jobs_database.driver.DatabaseDriver`;
it relies on the driver's tables, its ``_run`` (a transaction with error
translation and reconnects) and its row builder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from jobs_core import FailedJob, Message, QueueStats, ScheduleRecord
from jobs_core.errors import MalformedMessage
from jobs_core.message import validate_queue_name
from jobs_core.workflow_state import WORKFLOW_HEADER

from jobs_database.driver_parts import DriverParts
from jobs_database.schema import RESERVED, WAITING, flow_table
from jobs_database.wakeup import Waker

T = TypeVar("T")


#: In the body of a stored message whose headers may name its workflow.
_WORKFLOW_MARK = f'"{WORKFLOW_HEADER}"'.encode()


class AdminOperations(DriverParts):
    """Stats, failed jobs, purge, prune and schedules, in SQL."""

    workflows_table: sa.Table
    _waker: Waker
    _insert_stmt: sa.Insert

    def _rows(self, messages: Sequence[Message], bodies: Sequence[bytes], now: float) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _prune_status(self, conn: sa.Connection, cutoff: float) -> None:
        """Within ``prune``: remove status records finished before ``cutoff`` (see ``results.py``)."""

    # -- administration -----------------------------------------------------

    def stats(self, queue: str | None = None) -> QueueStats:
        """Pending, delayed, reserved, completed and failed counts."""
        if queue is not None:
            validate_queue_name(queue)
        jobs, completed, failed = self.tables.jobs, self.tables.completed, self.tables.failed

        def count(conn: sa.Connection) -> QueueStats:
            now = time.time()
            waiting = jobs.c.state == WAITING
            held = sa.and_(jobs.c.state == RESERVED, jobs.c.lease_until > now)
            one = sa.literal(1)
            q = sa.select(
                sa.func.count(),
                sa.func.sum(sa.case((held, 0), (sa.and_(waiting, jobs.c.visible_at > now), 0), else_=one)),
                sa.func.sum(sa.case((sa.and_(waiting, jobs.c.visible_at > now), one), else_=0)),
                sa.func.sum(sa.case((held, one), else_=0)),
            )
            c = sa.select(sa.func.coalesce(sa.func.sum(completed.c.count), 0))
            f = sa.select(sa.func.count()).select_from(failed)
            if queue is not None:
                q = q.where(jobs.c.queue == queue)
                c = c.where(completed.c.queue == queue)
                f = f.where(failed.c.queue == queue)
            row = conn.execute(q).one()
            return QueueStats(
                pending=int(row[1] or 0),
                delayed=int(row[2] or 0),
                reserved=int(row[3] or 0),
                completed=int(conn.execute(c).scalar() or 0),
                failed=int(conn.execute(f).scalar() or 0),
            )

        return self._run("stats", count)

    def queues(self) -> list[str]:
        """Every queue that holds jobs, completed counts or failed jobs."""
        t = self.tables
        stmt = sa.union(
            sa.select(t.jobs.c.queue).distinct(),
            sa.select(t.completed.c.queue).distinct(),
            sa.select(t.failed.c.queue).distinct(),
        )
        return sorted(self._run("listing queues", lambda conn: [r[0] for r in conn.execute(stmt)]))

    def stats_by_queue(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts of each queue (default: every queue), read by one statement: one snapshot."""
        names = None if queues is None else list(queues)
        for name in names or ():
            validate_queue_name(name)
        t = self.tables

        def count(conn: sa.Connection) -> dict[str, QueueStats]:
            now = time.time()
            jobs = t.jobs.c
            waiting = jobs.state == WAITING
            held = sa.and_(jobs.state == RESERVED, jobs.lease_until > now)
            later = sa.and_(waiting, jobs.visible_at > now)
            zero, one = sa.literal(0), sa.literal(1)
            parts = [
                sa.select(
                    jobs.queue.label("queue"),
                    sa.case((held, 0), (later, 0), else_=one).label("pending"),
                    sa.case((later, one), else_=0).label("delayed"),
                    sa.case((held, one), else_=0).label("reserved"),
                    zero.label("completed"),
                    zero.label("failed"),
                ),
                sa.select(t.completed.c.queue, zero, zero, zero, t.completed.c.count, zero),
                sa.select(t.failed.c.queue, zero, zero, zero, zero, one),
            ]
            if names is not None:
                parts = [part.where(part.selected_columns[0].in_(names)) for part in parts]
            rows = sa.union_all(*parts).subquery()
            stmt = sa.select(
                rows.c.queue,
                sa.func.sum(rows.c.pending),
                sa.func.sum(rows.c.delayed),
                sa.func.sum(rows.c.reserved),
                sa.func.sum(rows.c.completed),
                sa.func.sum(rows.c.failed),
            ).group_by(rows.c.queue)
            found = {
                row[0]: QueueStats(*(int(value or 0) for value in row[1:])) for row in conn.execute(stmt)
            }
            return {name: found.get(name, QueueStats()) for name in (names or sorted(found))}

        return self._run("stats", count)

    def _failed_job(self, row: Any) -> FailedJob:
        if not row.malformed:
            try:
                message = Message.decode(row.body)
            except MalformedMessage:
                pass
            else:
                return FailedJob(
                    id=row.id,
                    name=message.name,
                    queue=row.queue,
                    payload=message.payload,
                    attempts=int(row.attempts),
                    error=row.error,
                    failed_at=float(row.failed_at),
                    message=message,
                )
        return FailedJob(
            id=row.id,
            name=row.name,
            queue=row.queue,
            payload=None,
            attempts=int(row.attempts),
            error=row.error,
            failed_at=float(row.failed_at),
            raw=bytes(row.body).decode("utf-8", "replace"),
        )

    def failed(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[FailedJob]:
        """Failed jobs, newest first."""
        failed = self.tables.failed
        stmt = sa.select(failed).order_by(failed.c.seq.desc()).limit(max(0, limit)).offset(max(0, offset))
        if queue is not None:
            stmt = stmt.where(failed.c.queue == validate_queue_name(queue))
        rows = self._run("listing failed jobs", lambda conn: conn.execute(stmt).all())
        return [self._failed_job(row) for row in rows]

    def retry_failed(self, failed_id: str) -> bool:
        """Move a failed job back to its queue with attempts reset."""
        failed = self.tables.failed

        def move(conn: sa.Connection) -> bool:
            select = sa.select(failed).where(failed.c.id == failed_id).order_by(failed.c.seq.desc()).limit(1)
            row = conn.execute(select.with_for_update()).first()
            if row is None:
                return False
            conn.execute(sa.delete(failed).where(failed.c.seq == row.seq))
            now = time.time()
            entry = self._failed_job(row)
            if entry.message is not None:
                message = entry.message.replace(
                    attempts=0, available_at=now, unique_key=None, unique_ttl=None
                )
                values = self._rows([message], [message.encode()], now)[0]
            else:
                values = self._rows([Message(name="", id=entry.id, queue=row.queue)], [b""], now)[0]
                values["body"] = row.body
            try:
                with conn.begin_nested():
                    conn.execute(self._insert_stmt, values)
            except sa.exc.IntegrityError:
                pass  # a job with this id was enqueued again meanwhile and is unfinished: it stands
            return True

        done = self._run("retry_failed", move)
        if done:
            self._waker.notify()
        return done

    def forget_failed(self, failed_id: str) -> bool:
        """Delete a failed job."""
        failed = self.tables.failed
        stmt = sa.delete(failed).where(failed.c.id == failed_id)
        return bool(self._run("forget_failed", lambda conn: conn.execute(stmt).rowcount))

    def purge(self, queue: str) -> int:
        """Delete the waiting and delayed jobs of ``queue``; return how many.

        The jobs of workflows among them (their messages carry the workflow
        header, or a dispatch with ``after=`` watches them) are counted
        cancelled in their workflows in the same transaction. The queue's
        tenants left without a job are forgotten with them.
        """
        validate_queue_name(queue)
        jobs = self.tables.jobs
        tenants = flow_table(self.tables, "tenants")
        store_of: list[Any] = []

        def purge(conn: sa.Connection) -> int:
            doomed = sa.and_(
                jobs.c.queue == queue,
                sa.or_(jobs.c.state == WAITING, jobs.c.lease_until <= time.time()),
            )
            # Only rows that may belong to a workflow are read (a payload holding the
            # header's name is read too, and left alone once decoded).
            if self.backend == "sqlite":  # its LIKE does not match inside a BLOB
                named = sa.func.instr(jobs.c.body, _WORKFLOW_MARK) > 0
            else:
                named = jobs.c.body.like(b"%" + _WORKFLOW_MARK + b"%")
            maybe = sa.or_(jobs.c.watched.is_not(None), named)
            flows = []
            for body in conn.execute(sa.select(jobs.c.body).where(doomed, maybe)).scalars():
                try:
                    message = Message.decode(bytes(body))
                except MalformedMessage:
                    continue
                counted = self._flow_message(conn, message)
                if counted is not None:
                    flows.append(counted)
            count = int(conn.execute(sa.delete(jobs).where(doomed)).rowcount)
            if flows:
                self._cancel_in_workflow(conn, flows, store_of)
            left = sa.select(jobs.c.seq).where(jobs.c.queue == queue, jobs.c.tenant == tenants.c.tenant)
            conn.execute(sa.delete(tenants).where(tenants.c.queue == queue, ~left.exists()))
            return count

        count = self._run("purge", purge, after_commit=self._after_cancel_in_workflow(store_of))
        self._notify_after_workflow(store_of)
        return count

    def prune(self, older_than: float) -> int:
        """Remove completed counts, failed jobs and finished workflow records older than ``older_than``
        seconds; return how many (jobs, failed entries and workflow records).
        """
        completed, failed = self.tables.completed, self.tables.failed
        flows = self.workflows_table

        def prune(conn: sa.Connection) -> int:
            cutoff = time.time() - older_than
            rows = conn.execute(
                sa.select(completed.c.seq, completed.c.count)
                .where(completed.c.finished_at < cutoff)
                .with_for_update()
            ).all()
            removed = 0
            if rows:
                seqs = [r[0] for r in rows]
                for start in range(0, len(seqs), 1000):
                    chunk = seqs[start : start + 1000]
                    conn.execute(sa.delete(completed).where(completed.c.seq.in_(chunk)))
                removed += sum(int(r[1]) for r in rows)
            removed += int(conn.execute(sa.delete(failed).where(failed.c.failed_at < cutoff)).rowcount)
            # A record still running, or a chain stopped at a failed link, has no finish time.
            removed += int(conn.execute(sa.delete(flows).where(flows.c.finished_at < cutoff)).rowcount)
            self._prune_status(conn, cutoff)
            return removed

        return self._run("prune", prune)

    # -- schedules ----------------------------------------------------------

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace a schedule, keeping the stored ``last_tick`` if the record has none."""
        s = self.tables.schedules
        values: dict[str, Any] = {
            "data": json.dumps(dict(record.data), sort_keys=True),
            "next_run_at": record.next_run_at,
            "paused": bool(record.paused),
            "updated_at": record.updated_at,
        }
        if record.last_tick is not None:
            values["last_tick"] = record.last_tick

        def save(conn: sa.Connection) -> None:
            if conn.execute(sa.update(s).where(s.c.name == record.name).values(**values)).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(s).values(name=record.name, **values))
            except sa.exc.IntegrityError:
                conn.execute(sa.update(s).where(s.c.name == record.name).values(**values))

        self._run("save_schedule", save)

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        s = self.tables.schedules
        rows = self._run(
            "listing schedules", lambda conn: conn.execute(sa.select(s).order_by(s.c.name)).all()
        )
        return [
            ScheduleRecord(
                name=r.name,
                data=_schedule_data(r.name, r.data),
                next_run_at=r.next_run_at,
                paused=bool(r.paused),
                last_tick=r.last_tick,
                updated_at=float(r.updated_at),
            )
            for r in rows
        ]

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule."""
        s = self.tables.schedules
        stmt = sa.delete(s).where(s.c.name == name)
        return bool(self._run("remove_schedule", lambda conn: conn.execute(stmt).rowcount))

    def claim_tick(self, name: str, tick: float) -> bool:
        """Compare-and-set of ``last_tick`` in one ``UPDATE``: true for exactly one caller per tick."""
        s = self.tables.schedules
        stmt = (
            sa.update(s)
            .where(s.c.name == name, sa.or_(s.c.last_tick.is_(None), s.c.last_tick < tick))
            .values(last_tick=tick)
        )
        return bool(self._run("claim_tick", lambda conn: conn.execute(stmt).rowcount))


def _schedule_data(name: str, text: str) -> dict[str, Any]:
    """A schedule row's data; for a row that cannot be read, a stand-in the scheduler
    reports and skips ("stored in a form this version cannot read"), so one bad row
    stops no other schedule.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return {"v": None, "unreadable": f"schedule {name!r} data is not readable JSON: {exc}"}
    if not isinstance(data, dict):
        return {"v": None, "unreadable": f"schedule {name!r} data is not an object"}
    return data
