"""Workflow records in the ``workflows`` table (``WORKFLOWS``).

:class:`TransactionStore` is the
:class:`~jobs_core.workflow_state.WorkflowStore` of one open transaction: it
reads a record with ``SELECT ... FOR UPDATE`` (on SQLite the transaction
already holds the write lock, ``BEGIN IMMEDIATE``), keeps the records it
changed and the jobs to store, and writes them all with :meth:`flush`,
before the transaction commits. The driver's ``ack_many`` and ``fail`` use
it in the transaction that deletes the finished jobs, so that a completion
is counted, and its callback or next link stored, exactly when the job is
removed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from jobs_core.errors import MalformedMessage
from jobs_core.message import Message
from jobs_core.workflow_state import (
    CANCELLED,
    FAILED,
    MEMBER,
    SUCCEEDED,
    WATCHED,
    WORKFLOW_HEADER,
    WorkflowRecord,
)

from jobs_database.schema import RESULT_CANCELLED, WAITING

if TYPE_CHECKING:
    from jobs_database.driver import DatabaseDriver


def to_record(row: Any) -> WorkflowRecord:
    """The record of one ``workflows`` row."""
    return WorkflowRecord(
        id=str(row.id),
        kind=str(row.kind),
        status=str(row.status),
        total=int(row.total),
        succeeded=int(row.succeeded),
        failed=int(row.failed),
        cancelled=int(row.cancelled),
        created_at=float(row.created_at),
        finished_at=None if row.finished_at is None else float(row.finished_at),
        state=WorkflowRecord.parse_state(row.state),
    )


def _values(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "status": record.status,
        "total": record.total,
        "succeeded": record.succeeded,
        "failed": record.failed,
        "cancelled": record.cancelled,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "state": record.state_json(),
    }


class TransactionStore:
    """A :class:`~jobs_core.workflow_state.WorkflowStore` over one open connection."""

    def __init__(self, driver: DatabaseDriver, conn: sa.Connection) -> None:
        self._driver = driver
        self._conn = conn
        self._table = driver.workflows_table
        self._loaded: dict[str, WorkflowRecord | None] = {}
        self._stored: set[str] = set()
        self._dirty: dict[str, WorkflowRecord] = {}
        self._chunks: list[Sequence[Message]] = []
        self.enqueued = 0

    def load(self, workflow_id: str) -> WorkflowRecord | None:
        """The record, locked until the transaction ends; read once per transaction."""
        if workflow_id in self._dirty:
            return self._dirty[workflow_id]
        if workflow_id in self._loaded:
            return self._loaded[workflow_id]
        select = sa.select(self._table).where(self._table.c.id == workflow_id)
        if self._driver.backend != "sqlite":
            select = select.with_for_update()
        row = self._conn.execute(select).first()
        record = None if row is None else to_record(row)
        self._loaded[workflow_id] = record
        if record is not None:
            self._stored.add(workflow_id)
        return record

    def save(self, record: WorkflowRecord) -> None:
        """Keep ``record`` to write at :meth:`flush`."""
        self._dirty[record.id] = record

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` at :meth:`flush` (checked there, still in the transaction)."""
        if len(messages):
            self._chunks.append(messages)

    def fail(self, message: Message, error: str) -> None:
        """Insert ``message`` into the failed store now."""
        self._driver.insert_failed(self._conn, message, error)

    def remove_waiting(self, workflow_id: str) -> list[str]:
        """Delete the waiting jobs whose header names ``workflow_id``; return their ids."""
        jobs = self._driver.tables.jobs
        needle = f'"{WORKFLOW_HEADER}":"{workflow_id}"'.encode()
        backend = self._driver.backend
        contains: sa.ColumnElement[bool] | sa.TextClause
        if backend == "postgresql":
            contains = sa.text("position(CAST(:needle AS bytea) IN body) > 0").bindparams(
                sa.bindparam("needle", needle, type_=sa.LargeBinary)
            )
        elif backend == "sqlite":
            contains = sa.func.instr(jobs.c.body, sa.literal(needle, sa.LargeBinary)) > 0
        else:
            contains = sa.func.locate(sa.literal(needle, sa.LargeBinary), jobs.c.body) > 0
        select = sa.select(jobs.c.seq, jobs.c.id).where(jobs.c.state == WAITING, contains)
        if backend != "sqlite":
            select = select.with_for_update()
        rows = self._conn.execute(select).all()
        removed = [str(row.id) for row in rows]
        seqs = [int(row.seq) for row in rows]
        for start in range(0, len(seqs), 1000):
            chunk = seqs[start : start + 1000]
            self._conn.execute(sa.delete(jobs).where(jobs.c.seq.in_(chunk), jobs.c.state == WAITING))
        chunks: list[Sequence[Message]] = []
        for chunk_messages in self._chunks:
            kept = []
            for message in chunk_messages:
                if message.headers.get(WORKFLOW_HEADER) == workflow_id:
                    removed.append(message.id)
                else:
                    kept.append(message)
            if kept:
                chunks.append(kept)
        self._chunks = chunks
        return removed

    def watch(self, job_id: str) -> str | None:
        """Set ``jobs.watched`` on the stored job ``job_id``, or say how it ended (``WorkflowStore.watch``).

        The row is locked and updated here, so an ack running at the same
        time either finished it before (this finds how it ended) or finds it
        watched (and leaves it to the workflow path).
        """
        driver, conn = self._driver, self._conn
        jobs = driver.tables.jobs
        select = sa.select(jobs.c.seq, jobs.c.body).where(jobs.c.id == job_id)
        if driver.backend != "sqlite":
            select = select.with_for_update()
        row = conn.execute(select).first()
        if row is not None:
            try:
                headers = Message.decode(bytes(row.body)).headers
            except MalformedMessage:
                headers = {}
            if WORKFLOW_HEADER in headers:
                return MEMBER
            conn.execute(sa.update(jobs).where(jobs.c.seq == row.seq).values(watched=1))
            return WATCHED
        results, failed = driver.tables.results, driver.tables.failed
        kept = None
        if driver.results_ttl > 0:
            kept = conn.execute(
                sa.select(results.c.state, results.c.finished_at).where(
                    results.c.id == job_id, results.c.finished_at >= time.time() - driver.results_ttl
                )
            ).first()
        entry = conn.execute(
            sa.select(failed.c.failed_at).where(failed.c.id == job_id).order_by(failed.c.seq.desc()).limit(1)
        ).first()
        if entry is not None and (kept is None or float(entry.failed_at) >= float(kept.finished_at)):
            return FAILED
        if kept is not None:
            return CANCELLED if int(kept.state) == RESULT_CANCELLED else SUCCEEDED
        return None

    def flush(self) -> None:
        """Write the changed records and store the jobs kept (still in the transaction)."""
        table = self._table
        for record in self._dirty.values():
            values = _values(record)
            if record.id in self._stored:
                self._conn.execute(sa.update(table).where(table.c.id == record.id).values(**values))
            else:
                self._conn.execute(sa.insert(table).values(id=record.id, **values))
                self._stored.add(record.id)
        self._loaded.update(self._dirty)
        self._dirty.clear()
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            self._driver.insert_in(self._conn, chunk)
            self.enqueued += len(chunk)
