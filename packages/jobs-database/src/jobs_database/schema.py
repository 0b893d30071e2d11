"""The tables, their indexes, and the versioned migrations that create them.

Tables (every name starts with the configured prefix, ``jobs_`` by default):

``jobs``
    The hot table: one row per unfinished message. ``visible_at`` is when the
    row becomes due; a reserved row also has ``lease_until``, and is due again
    once that has passed. The claim index is ``(queue, priority DESC,
    visible_at, seq)``; claiming changes only unindexed columns.
``completed``
    How many jobs each ack batch finished, per queue and time, so that
    ``stats`` and ``prune`` give real counts without keeping finished rows in
    the hot table.
``failed``
    The failed store: jobs that used up their attempts and records that could
    not be decoded.
``schedules``
    Persisted schedules and the last claimed tick of each.
``schema``
    One row: the schema version, so a newer driver upgrades in place.
``results``
    Finished jobs kept for ``results_ttl`` seconds (schema version 7), one
    row per job id: their state (succeeded or cancelled), return value and
    finish time, for ``job_status``. Written in the transaction of the ack.
``running``
    What is known of running jobs beyond their row (schema version 7): the
    worker, the last progress reported, and a cancellation request, each for
    the jobs row ``job_seq`` (a row for an older run of the id is stale).
``workflows``
    One row per batch, chain or dependent job (schema version 8): counts
    and state, changed in the transaction that acknowledges or fails one of its jobs.
``workers``
    One row per worker seen recently (schema version 13), renewed every few
    seconds by the worker and deleted when it stops or goes stale.
``tenants``
    One row per tenant of a queue (schema version 11): the jobs of a queue
    carrying a tenant (``Job.tenant``; the jobs table's ``tenant`` column) are
    claimed in turns between its tenants, least recently served first.

The jobs table constrains its columns to values a claim can act on
(:data:`JOBS_CHECKS`): a known state, a reserved row with a lease end, a
32-bit priority, and times from 0 to :data:`~jobs_core.limits.MAX_TIMESTAMP`
(never NaN or infinite). A row written by other means with any other value is
refused by the database instead of waiting forever.

Schema changes are migrations: functions run in order inside a lock that
serialises concurrent upgrades from several processes.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from jobs_core.limits import MAX_PRIORITY, MAX_TIMESTAMP, MIN_PRIORITY
from jobs_core.message import Message
from sqlalchemy.dialects import mysql
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

#: Job states in ``jobs.state``.
WAITING = 0
RESERVED = 1

#: PostgreSQL fill factor of the jobs table.
JOBS_FILLFACTOR = 70

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Body = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_Time: sa.Double[float] = sa.Double()
_LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

#: Longest tenant key stored in the jobs table (as ``jobs_core.flow.MAX_FLOW_KEY``).
MAX_TENANT = 200

#: ``results.state`` of a succeeded job.
RESULT_SUCCEEDED = 2
#: ``results.state`` of a cancelled job.
RESULT_CANCELLED = 3


def _time_range(column: str) -> str:
    return f"{column} BETWEEN 0 AND {MAX_TIMESTAMP!r}"


#: The CHECK constraints of the jobs table (schema version 5): name suffix and
#: SQL condition. A row must satisfy every one to be stored; comparisons with
#: NaN are false (PostgreSQL), and on SQLite text and blobs sort above every
#: number, so a value of the wrong type fails the range checks as well.
JOBS_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "state",
        f"state = {WAITING} OR "
        f"(state = {RESERVED} AND lease_until IS NOT NULL AND {_time_range('lease_until')})",
    ),
    ("priority", f"priority BETWEEN {MIN_PRIORITY} AND {MAX_PRIORITY}"),
    ("visible_at", _time_range("visible_at")),
    ("created_at", _time_range("created_at")),
    ("unique_until", f"unique_until IS NULL OR {_time_range('unique_until')}"),
)
#: SQLite only (its columns take values of any type): the body is a blob.
SQLITE_BODY_CHECK = ("body", "typeof(body) = 'blob'")


@dataclass(frozen=True)
class Tables:
    """The :class:`sqlalchemy.Table` objects of one table prefix."""

    prefix: str
    metadata: sa.MetaData
    jobs: sa.Table
    completed: sa.Table
    failed: sa.Table
    schedules: sa.Table
    version: sa.Table
    results: sa.Table
    running: sa.Table

    @property
    def notify_channel(self) -> str:
        """The PostgreSQL LISTEN/NOTIFY channel of this prefix."""
        return f"{self.prefix}jobs_wakeup"


def build_tables(prefix: str) -> Tables:
    """Define the tables for ``prefix`` (which must already be validated)."""
    md = sa.MetaData()
    jobs = sa.Table(
        f"{prefix}jobs",
        md,
        sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, default=0),
        sa.Column("visible_at", _Time, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False, default=WAITING),
        sa.Column("receipt", sa.String(96), nullable=True),
        sa.Column("lease_until", _Time, nullable=True),
        sa.Column("unique_key", sa.String(255), nullable=True),
        sa.Column("unique_until", _Time, nullable=True),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("body", _Body, nullable=False),
        # Set on a job some dispatch with after= waits for (schema version 12):
        # its plain ack leaves it to the workflow path, which counts it.
        sa.Column("watched", sa.SmallInteger, nullable=True),
        # The job's tenant (schema version 11); NULL for the jobs without one.
        sa.Column("tenant", sa.String(MAX_TENANT), nullable=True),
        *(sa.CheckConstraint(condition, name=f"{prefix}jobs_{name}") for name, condition in JOBS_CHECKS),
        sa.CheckConstraint(SQLITE_BODY_CHECK[1], name=f"{prefix}jobs_{SQLITE_BODY_CHECK[0]}").ddl_if(
            dialect="sqlite"
        ),
        # Room on each page for claims to update rows in place (HOT updates).
        postgresql_with={"fillfactor": JOBS_FILLFACTOR},
    )
    sa.Index(
        f"{prefix}jobs_claim",
        jobs.c.queue,
        jobs.c.priority.desc(),
        jobs.c.visible_at,
        jobs.c.seq,
    )
    # Partial where the backend has partial indexes: rows without a key cost nothing.
    has_key = jobs.c.unique_key.is_not(None)
    sa.Index(
        f"{prefix}jobs_unique",
        jobs.c.unique_key,
        unique=True,
        postgresql_where=has_key,
        sqlite_where=has_key,
    )
    # The claim index of each tenant's jobs (schema version 11). Partial where the backend
    # has partial indexes, so that a job without a tenant writes no entry to it.
    has_tenant = jobs.c.tenant.is_not(None)
    sa.Index(
        f"{prefix}jobs_tenant",
        jobs.c.queue,
        jobs.c.tenant,
        jobs.c.priority.desc(),
        jobs.c.visible_at,
        jobs.c.seq,
        postgresql_where=has_tenant,
        sqlite_where=has_tenant,
    )
    # One unfinished job per id: an enqueue repeating an id stores nothing (schema version 6).
    sa.Index(f"{prefix}jobs_id", jobs.c.id, unique=True)
    completed = sa.Table(
        f"{prefix}completed",
        md,
        sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("finished_at", _Time, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    sa.Index(f"{prefix}completed_time", completed.c.finished_at)
    failed = sa.Table(
        f"{prefix}failed",
        md,
        sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", _Time, nullable=False),
        sa.Column("malformed", sa.Boolean, nullable=False, default=False),
        sa.Column("body", _Body, nullable=False),
    )
    sa.Index(f"{prefix}failed_id", failed.c.id)
    sa.Index(f"{prefix}failed_time", failed.c.failed_at)
    sa.Index(f"{prefix}failed_queue", failed.c.queue, failed.c.seq)
    schedules = sa.Table(
        f"{prefix}schedules",
        md,
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("next_run_at", _Time, nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False, default=False),
        sa.Column("last_tick", _Time, nullable=True),
        sa.Column("updated_at", _Time, nullable=False),
    )
    version = sa.Table(
        f"{prefix}schema",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("upgraded_at", _Time, nullable=False),
    )
    results = sa.Table(
        f"{prefix}results",
        md,
        # One row per job id (the latest run of an id dispatched again replaces it):
        # one index to write per acknowledged job, besides the time index.
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("result", _LongText, nullable=True),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("finished_at", _Time, nullable=False),
    )
    # BRIN on PostgreSQL: rows arrive in time order, and a BRIN index costs next to nothing to keep.
    sa.Index(f"{prefix}results_time", results.c.finished_at, postgresql_using="brin")
    running = sa.Table(
        f"{prefix}running",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_seq", _BigInt, nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("cancel", sa.Boolean, nullable=False, default=False),
        sa.Column("updated_at", _Time, nullable=False),
    )
    workflow_table(md, prefix)
    build_flow_tables(md, prefix)
    tables = Tables(prefix, md, jobs, completed, failed, schedules, version, results, running)
    worker_table(tables)
    return tables


def workflow_table(md: sa.MetaData, prefix: str) -> sa.Table:
    """The ``workflows`` table of ``prefix`` (schema version 8): one row per batch,
    chain or dependent job, its counts in columns and the rest as JSON in ``state``
    (see :mod:`jobs_core.workflow_state`). Defined on ``md`` once.
    """
    name = f"{prefix}workflows"
    if name in md.tables:
        return md.tables[name]
    table = sa.Table(
        name,
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Integer, nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("finished_at", _Time, nullable=True),
        sa.Column("state", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
    )
    sa.Index(f"{prefix}workflows_created", table.c.created_at)
    # For prune (schema version 12).
    sa.Index(f"{prefix}workflows_finished", table.c.finished_at)
    return table


def build_flow_tables(md: sa.MetaData, prefix: str) -> None:
    """Define the flow-control tables of ``prefix`` on ``md`` (schema version 10).

    ``paused_queues``: one row per paused queue. ``flow_keys``: one row per
    rate-limit or concurrency key, locked while it is updated (``r:KEY``
    holds the rate window as JSON in ``data``; ``s:KEY`` only serialises the
    takers of the slots of ``KEY``). ``slots``: one row per held
    concurrency slot, with its lease. ``tenants`` (schema version 11): one
    row per tenant of a queue, for the claim's turns.
    """
    sa.Table(
        f"{prefix}paused_queues",
        md,
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("paused_at", _Time, nullable=False),
    )
    sa.Table(
        f"{prefix}flow_keys",
        md,
        sa.Column("name", sa.String(210), primary_key=True),
        sa.Column("data", sa.Text, nullable=True),
    )
    sa.Table(
        f"{prefix}tenants",
        md,
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("tenant", sa.String(MAX_TENANT), primary_key=True),
        # When a claim last took the tenant's turn; a new tenant's 0 puts it first.
        sa.Column("served_at", _Time, nullable=False),
    )
    sa.Table(
        f"{prefix}slots",
        md,
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(96), primary_key=True),
        sa.Column("until", _Time, nullable=False),
    )


def worker_table(t: Tables) -> sa.Table:
    """The ``workers`` table of ``t`` (schema version 13): one row per worker seen
    recently, its :class:`~jobs_core.worker_records.WorkerRecord` as JSON in ``data``.
    Defined on ``t.metadata`` once.
    """
    name = f"{t.prefix}workers"
    if name in t.metadata.tables:
        return t.metadata.tables[name]
    return sa.Table(
        name,
        t.metadata,
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("last_seen", _Time, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def flow_table(t: Tables, name: str) -> sa.Table:
    """One of the flow-control tables of ``t`` (``paused_queues``, ``flow_keys``, ``slots``, ``tenants``)."""
    return t.metadata.tables[f"{t.prefix}{name}"]


# -- migrations -----------------------------------------------------------------

Migration = Callable[[sa.Connection, Tables], None]


def _rebind(expression: Any, table: sa.Table) -> Any:
    """An index expression (a column, or a column ``DESC``) on ``table`` instead."""
    if isinstance(expression, sa.Column):
        return table.c[expression.name]
    if isinstance(expression, UnaryExpression) and isinstance(expression.element, sa.Column):
        column = table.c[expression.element.name]
        return column.desc() if expression.modifier is operators.desc_op else column.asc()
    raise TypeError(f"cannot copy index expression {expression!r}")


def _as_of_v1(table: sa.Table, drop_columns: tuple[str, ...], drop_indexes: tuple[str, ...]) -> sa.Table:
    """``table`` as version 1 created it: without the columns and indexes added later."""
    old = sa.Table(
        table.name, sa.MetaData(), *(c._copy() for c in table.columns if c.name not in drop_columns)
    )
    for index in table.indexes:
        if index.name not in drop_indexes:
            sa.Index(
                index.name,
                *(_rebind(expression, old) for expression in index.expressions),
                unique=index.unique,
                **index.dialect_kwargs,
            )
    return old


#: Columns of the jobs table added by a migration after version 5 (which may rebuild the table).
_LATER_JOBS_COLUMNS = ("watched", "tenant")


def _v1(conn: sa.Connection, t: Tables) -> None:
    """Version 1: the hot table, the failed store, schedules and the version row.

    In version 1 a reserved row's lease end was kept in ``visible_at``.
    """
    for table in (t.version, t.schedules):
        table.create(conn, checkfirst=True)
    _as_of_v1(
        t.jobs, ("lease_until", *_LATER_JOBS_COLUMNS), (f"{t.prefix}jobs_id", f"{t.prefix}jobs_tenant")
    ).create(conn, checkfirst=True)
    _as_of_v1(t.failed, (), (f"{t.prefix}failed_queue",)).create(conn, checkfirst=True)


def _v2(conn: sa.Connection, t: Tables) -> None:
    """Version 2: completed-job counts, and the failed store indexed by queue."""
    t.completed.create(conn, checkfirst=True)
    index = next(i for i in t.failed.indexes if i.name == f"{t.prefix}failed_queue")
    existing = {i["name"] for i in sa.inspect(conn).get_indexes(t.failed.name)}
    if index.name not in existing:
        index.create(conn)


def _v3(conn: sa.Connection, t: Tables) -> None:
    """Version 3: the lease end moves to its own, unindexed ``lease_until`` column.

    Claiming then changes no indexed column (PostgreSQL updates the row in
    place); rows reserved under version 2 keep their lease.
    """
    columns = {c["name"] for c in sa.inspect(conn).get_columns(t.jobs.name)}
    if "lease_until" not in columns:
        column = t.jobs.c.lease_until
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {t.jobs.name} ADD COLUMN lease_until {kind}"))
    conn.execute(
        sa.update(t.jobs)
        .where(t.jobs.c.state == RESERVED, t.jobs.c.lease_until.is_(None))
        .values(lease_until=t.jobs.c.visible_at)
    )
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ALTER TABLE {t.jobs.name} SET (fillfactor = {JOBS_FILLFACTOR})"))


def _v4(conn: sa.Connection, t: Tables) -> None:
    """Version 4: on PostgreSQL the jobs table loses its primary-key index.

    Every row is found through the claim index instead: a claim locks rows
    there and updates them by their physical address (``ctid``), and the
    holder of a lease names its row by the claim index's key (queue,
    priority, ``visible_at``, ``seq``), which a claim never changes. One index
    fewer to maintain makes each insert about a quarter cheaper for the
    server. SQLite (where ``seq`` is the row id) and InnoDB (which clusters
    rows by it) keep theirs.

    The ``queue`` column, the claim index's first key, also takes the "C"
    collation there: queue names are ASCII identifiers, and comparing them
    byte by byte is cheaper than by the database's locale. (This rewrites the
    jobs table once, holding its lock meanwhile.)
    """
    if conn.dialect.name == "postgresql":
        jobs = t.jobs.name
        conn.execute(sa.text(f"ALTER TABLE {jobs} DROP CONSTRAINT IF EXISTS {jobs}_pkey"))
        conn.execute(sa.text(f'ALTER TABLE {jobs} ALTER COLUMN queue TYPE varchar(100) COLLATE "C"'))


def _v5(conn: sa.Connection, t: Tables) -> None:
    """Version 5: the jobs table's CHECK constraints (:data:`JOBS_CHECKS`).

    Rows already breaking them (an unknown state, a reserved row without a
    lease end, a NaN or out-of-range time, a priority beyond 32 bits; written
    by other means, and so never claimed) are first moved to the failed store,
    each with the reason. PostgreSQL and MariaDB add the constraints in place;
    SQLite, which cannot add a constraint to a table, copies the rows into a
    new jobs table.
    """
    jobs = t.jobs.name
    conditions = list(JOBS_CHECKS)
    if conn.dialect.name == "sqlite":
        conditions.append(SQLITE_BODY_CHECK)
    allowed = " AND ".join(f"({condition})" for _, condition in conditions)
    columns = ("seq", "id", "queue", "state", "priority", "visible_at", "lease_until", "created_at")
    bad = conn.execute(
        sa.text(f"SELECT {', '.join(columns)}, unique_until, body FROM {jobs} WHERE NOT ({allowed})")
    ).all()
    now = time.time()
    for row in bad:
        _fail_impossible(conn, t, row, now)
    if bad:
        conn.execute(sa.text(f"DELETE FROM {jobs} WHERE NOT ({allowed})"))
    if conn.dialect.name == "postgresql":
        # NOT VALID: new and updated rows are checked at once, without the full scan
        # under an exclusive lock that validating would take (the rows breaking the
        # constraints were just moved out).
        for name, condition in JOBS_CHECKS:
            conn.execute(
                sa.text(
                    f"ALTER TABLE {jobs} ADD CONSTRAINT {t.prefix}jobs_{name} CHECK ({condition}) NOT VALID"
                )
            )
        return
    if conn.dialect.name != "sqlite":
        for constraint in t.jobs.constraints:
            if isinstance(constraint, sa.CheckConstraint) and constraint.name != f"{t.prefix}jobs_body":
                conn.execute(sa.schema.AddConstraint(constraint))
        return
    old = f"{jobs}_v4"
    conn.execute(sa.text(f"ALTER TABLE {jobs} RENAME TO {old}"))
    for index in t.jobs.indexes:
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
    t.jobs.create(conn)
    conn.execute(sa.text(f"DROP INDEX IF EXISTS {t.prefix}jobs_id"))  # version 6 adds it
    had = {c["name"] for c in sa.inspect(conn).get_columns(old)}
    names = ", ".join(c.name for c in t.jobs.columns if c.name in had)
    conn.execute(sa.text(f"INSERT INTO {jobs} ({names}) SELECT {names} FROM {old}"))
    conn.execute(sa.text(f"DROP TABLE {old}"))


def _fail_impossible(conn: sa.Connection, t: Tables, row: Any, now: float) -> None:
    """Move one row that breaks the jobs table's constraints to the failed store, with the reason."""
    body = row.body if isinstance(row.body, (bytes, bytearray, memoryview)) else str(row.body).encode()
    body = bytes(body)
    problems = _impossible(row)
    error = f"impossible row in the jobs table (written by other means; never claimable): {problems}"
    try:
        message: Message | None = Message.decode(body)
    except Exception:  # any unreadable body: kept raw, as a malformed record
        message = None
    conn.execute(
        sa.insert(t.failed).values(
            id=str(row.id)[:64],
            queue=str(row.queue)[:100],
            name="" if message is None else message.name[:255],
            attempts=0 if message is None else message.attempts,
            error=error,
            failed_at=now,
            malformed=message is None,
            body=body,
        )
    )


def _impossible(row: Any) -> str:
    """What is wrong with a row of the jobs table, in words."""

    def timestamp(value: object) -> bool:
        return isinstance(value, (int, float)) and 0 <= value <= MAX_TIMESTAMP

    problems = []
    if row.state not in (WAITING, RESERVED) or isinstance(row.state, bool):
        problems.append(f"state {row.state!r} (allowed: {WAITING} waiting, {RESERVED} reserved)")
    elif row.state == RESERVED and not timestamp(row.lease_until):
        problems.append(f"reserved with lease_until {row.lease_until!r} (allowed: a Unix time)")
    if not (isinstance(row.priority, (int, float)) and MIN_PRIORITY <= row.priority <= MAX_PRIORITY):
        problems.append(f"priority {row.priority!r} (allowed: {MIN_PRIORITY} to {MAX_PRIORITY})")
    for column in ("visible_at", "created_at"):
        if not timestamp(getattr(row, column)):
            problems.append(f"{column} {getattr(row, column)!r} (allowed: 0 to {MAX_TIMESTAMP:.0f})")
    if row.unique_until is not None and not timestamp(row.unique_until):
        problems.append(f"unique_until {row.unique_until!r} (allowed: 0 to {MAX_TIMESTAMP:.0f})")
    if not isinstance(row.body, (bytes, bytearray, memoryview)):
        problems.append(f"body of type {type(row.body).__name__} (allowed: bytes)")
    return "; ".join(problems) or "breaks the jobs table's constraints"


def _v6(conn: sa.Connection, t: Tables) -> None:
    """Version 6: a unique index on the jobs table's ``id``.

    An enqueue of a message whose id belongs to an unfinished job then stores
    nothing (``IDEMPOTENT_ENQUEUE``). Rows that repeat the id of an earlier
    row (stored by earlier versions, which did not check) are deleted first:
    the earliest row of each id is the job, and is kept.
    """
    jobs = t.jobs.name
    conn.execute(
        sa.text(
            f"DELETE FROM {jobs} WHERE seq NOT IN "
            f"(SELECT keep FROM (SELECT MIN(seq) AS keep FROM {jobs} GROUP BY id) AS earliest)"
        )
    )
    index = next(i for i in t.jobs.indexes if i.name == f"{t.prefix}jobs_id")
    index.create(conn)


def _v7(conn: sa.Connection, t: Tables) -> None:
    """Version 7: the ``results`` and ``running`` tables (status, results, progress, cancellation)."""
    t.results.create(conn, checkfirst=True)
    t.running.create(conn, checkfirst=True)


def _v8(conn: sa.Connection, t: Tables) -> None:
    """Version 8: the ``workflows`` table (chains, batches, dependencies)."""
    workflow_table(t.metadata, t.prefix).create(conn, checkfirst=True)


def _v9(conn: sa.Connection, t: Tables) -> None:
    """Version 9: the ``results`` table keyed by job id, one index to write per acknowledged job.

    A table made by the first form of version 7 (a ``seq`` key and an index on
    ``id``) is dropped and made again: it holds only results kept for
    ``results_ttl``, which the jobs it describes no longer need.
    """
    columns = {column["name"] for column in sa.inspect(conn).get_columns(t.results.name)}
    if "seq" in columns:
        conn.execute(sa.text(f"DROP TABLE {t.results.name}"))
        t.results.create(conn)


def _v10(conn: sa.Connection, t: Tables) -> None:
    """Version 10: the flow-control tables (paused queues, rate windows, concurrency slots)."""
    for name in ("paused_queues", "flow_keys", "slots"):
        flow_table(t, name).create(conn, checkfirst=True)


def _v11(conn: sa.Connection, t: Tables) -> None:
    """Version 11: tenant fairness: the jobs table's ``tenant`` column, its index, and ``tenants``.

    Stored rows keep ``tenant`` NULL (they were enqueued without one being
    stored; they are claimed as jobs without a tenant). Adding a nullable
    column rewrites no row on PostgreSQL, SQLite or MariaDB; the partial
    index (PostgreSQL, SQLite) starts empty. A jobs table made by a later
    definition (the SQLite copy of version 5) already has both.
    """
    inspector = sa.inspect(conn)
    jobs = t.jobs.name
    if "tenant" not in {c["name"] for c in inspector.get_columns(jobs)}:
        kind = t.jobs.c.tenant.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {jobs} ADD COLUMN tenant {kind}"))
    index = next(i for i in t.jobs.indexes if i.name == f"{t.prefix}jobs_tenant")
    if index.name not in {i["name"] for i in inspector.get_indexes(jobs)}:
        index.create(conn)
    flow_table(t, "tenants").create(conn, checkfirst=True)


def _v12(conn: sa.Connection, t: Tables) -> None:
    """Version 12: ``jobs.watched``, set on a job that a dispatch with ``after=`` waits for, and
    the ``workflows`` table indexed by finish time (prune).

    A nullable column without a default: added without rewriting the table.
    """
    inspector = sa.inspect(conn)
    columns = {column["name"] for column in inspector.get_columns(t.jobs.name)}
    if "watched" not in columns:  # a table rebuilt by version 5 on SQLite already has it
        conn.execute(sa.text(f"ALTER TABLE {t.jobs.name} ADD COLUMN watched SMALLINT"))
    flows = workflow_table(t.metadata, t.prefix)
    index = next(i for i in flows.indexes if i.name == f"{t.prefix}workflows_finished")
    if index.name not in {i["name"] for i in inspector.get_indexes(flows.name)}:
        index.create(conn)


def _v13(conn: sa.Connection, t: Tables) -> None:
    """Version 13: the ``workers`` table (workers seen recently)."""
    worker_table(t).create(conn, checkfirst=True)


#: The migrations, in order; the schema version is the number applied.
MIGRATIONS: tuple[Migration, ...] = (_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11, _v12, _v13)
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sa.Connection, t: Tables) -> int:
    """The schema version recorded in the database, 0 if there is no schema yet."""
    if not sa.inspect(conn).has_table(t.version.name):
        return 0
    row = conn.execute(sa.select(t.version.c.version).where(t.version.c.id == 1)).first()
    return int(row[0]) if row else 0


def _lock_key(prefix: str) -> int:
    return zlib.crc32(f"jobs-schema:{prefix}".encode()) & 0x7FFFFFFF


def upgrade(engine: sa.Engine, t: Tables, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the schema of ``t`` up to version ``target``; return ``(before, after)``.

    Safe to call from many processes at once: the migrations run under a lock
    (a transaction-level advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL,
    the write lock of ``BEGIN IMMEDIATE`` on SQLite), and each process
    re-reads the version once it holds the lock.
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "mysql":
            name = f"jobs-schema-{_lock_key(t.prefix)}"
            got = conn.execute(sa.text("SELECT GET_LOCK(:n, 60)"), {"n": name}).scalar()
            if got != 1:
                raise TimeoutError(f"could not take the schema lock {name!r} within 60 s")
            try:
                conn.commit()
                return _apply(conn, t, target)
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
                conn.commit()
        with conn.begin():
            if dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(t.prefix)})
            return _apply(conn, t, target, transactional=True)


def _apply(conn: sa.Connection, t: Tables, target: int, transactional: bool = False) -> tuple[int, int]:
    before = current_version(conn, t)
    version = before
    while version < target:
        MIGRATIONS[version](conn, t)
        version += 1
        values = {"version": version, "upgraded_at": time.time()}
        updated = conn.execute(sa.update(t.version).where(t.version.c.id == 1).values(**values)).rowcount
        if not updated:
            conn.execute(sa.insert(t.version).values(id=1, **values))
        if not transactional:
            conn.commit()
    return before, version


def drop_all(engine: sa.Engine, t: Tables) -> None:
    """Drop every table of the prefix (tests and ``jobs db drop``)."""
    with engine.begin() as conn:
        t.metadata.drop_all(conn, checkfirst=True)
