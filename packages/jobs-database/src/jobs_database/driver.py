"""The ``database`` driver: job queues in SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from jobs_core import Capability, Delivery, Driver, Message
from jobs_core.errors import BackendError, ConfigurationError, JobsError, MalformedMessage
from jobs_core.message import MessageBatch, new_id, validate_queue_name
from jobs_core.workflow_state import JOB, WORKFLOW_HEADER, WorkflowRecord, job_cancelled, job_finished

from jobs_database import schema
from jobs_database.admin import AdminOperations
from jobs_database.bulk import SMALL_BATCH, BulkInsert
from jobs_database.claims import Acker, Claimer, Handle
from jobs_database.engine import create_engine
from jobs_database.errors import translate
from jobs_database.fairness import TenantClaims, carries_tenant
from jobs_database.flow import FlowOperations
from jobs_database.listing import ListingOperations
from jobs_database.schema import WAITING, Tables, build_tables
from jobs_database.settings import DatabaseSettings
from jobs_database.wakeup import (
    MYSQL_LINGER,
    MySqlBell,
    MySqlWatcher,
    PgListener,
    Waker,
    mysql_slot_names,
    shared_waker,
)
from jobs_database.workflows import TransactionStore, to_record

T = TypeVar("T")

log = logging.getLogger("jobs_database.driver")

#: Messages checked and encoded at a time by a streamed (PostgreSQL ``COPY``) enqueue.
STREAM_CHUNK = 500


def _plain_row(m: Message, body: bytes) -> tuple[Any, ...]:
    """The row of a message without a unique key, in :data:`~jobs_database.bulk.COLUMNS` order."""
    return (m.id, m.queue, m.priority, m.available_at, WAITING, m.created_at, body)


_ALL = frozenset(
    {
        Capability.DELAY,
        Capability.PRIORITY,
        Capability.UNIQUE,
        Capability.FAILED_STORE,
        Capability.RETRY_FAILED,
        Capability.STATS,
        Capability.COMPLETED_COUNT,
        Capability.PURGE,
        Capability.PRUNE,
        Capability.SCHEDULES,
        Capability.BLOCKING_RESERVE,
        Capability.ATOMIC_BATCH,
        Capability.TRANSACTIONAL_ENQUEUE,
        Capability.RAW_INJECTION,
        Capability.LEASE_HANDOFF,
        Capability.IDEMPOTENT_ENQUEUE,
        Capability.STATUS,
        Capability.PROGRESS,
        Capability.CANCEL,
        Capability.WORKFLOWS,
        Capability.QUEUE_PAUSE,
        Capability.RATE_LIMITS,
        Capability.CONCURRENCY_LIMITS,
        Capability.WORKERS,
        Capability.JOB_LISTING,
        Capability.TENANT_FAIRNESS,
    }
)

#: Back-off between attempts of an operation whose connection dropped.
RETRY_BACKOFF = (0.05, 0.25, 1.0)

_schema_ready: set[tuple[str, str]] = set()
_schema_lock = threading.Lock()


def _missing_table(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return (
        "no such table" in text
        or "doesn't exist" in text
        or ("relation" in text and "does not exist" in text)
    )


def _any_due(messages: Sequence[Message], now: float) -> bool:
    """Whether any of ``messages`` is due at ``now`` (a bulk batch shares its due time)."""
    if isinstance(messages, MessageBatch):
        return bool(messages.common["available_at"] <= now)
    return any(m.available_at <= now for m in messages)


class DatabaseDriver(ListingOperations, AdminOperations, FlowOperations, Driver):
    """Jobs stored in a SQL database through SQLAlchemy 2 Core.

    Build it from a URL (``sqlite:///jobs.db``, ``postgresql://user@host/db``,
    ``mysql://user@host/db``) or the dict form ``driver="database",
    connection=URL``, with settings in the URL's query string or as keyword
    options: ``table_prefix``, ``poll_interval``, ``pool_size``,
    ``connect_timeout``, ``max_message_bytes``, ``busy_timeout`` and
    ``synchronous`` (SQLite), ``create_schema``, ``notify`` (PostgreSQL,
    MySQL), ``results_ttl`` (seconds finished jobs' status and results are
    kept; a day by default, ``0`` keeps none).
    """

    name: ClassVar[str] = "database"
    schemes: ClassVar[tuple[str, ...]] = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
    capabilities: ClassVar[frozenset[Capability]] = _ALL

    def __init__(self, url: str | None = None, **options: Any) -> None:
        settings = DatabaseSettings.parse(url, options)
        super().__init__(url if url is not None else options.get("connection"), **options)
        self.settings = settings
        self.backend = settings.backend
        self.max_message_bytes = settings.max_message_bytes
        self.results_ttl = settings.results_ttl
        caps = set(_ALL)
        if settings.in_memory:
            caps.discard(Capability.TRANSACTIONAL_ENQUEUE)
        self.capabilities = frozenset(caps)  # type: ignore[misc]
        self.tables: Tables = build_tables(settings.table_prefix)
        #: The ``workflows`` table (``WORKFLOWS``, schema version 8).
        self.workflows_table = schema.workflow_table(self.tables.metadata, settings.table_prefix)
        self.engine = create_engine(settings)
        self._claimer = Claimer(self.backend, self.tables)
        self._bulk = BulkInsert(self.backend, self.tables)
        self._bulk_tenant = BulkInsert(self.backend, self.tables, tenant=True)
        self._tenants = TenantClaims(self.backend, self.tables, self._claimer)
        self._acker = Acker(self.backend, self.tables)
        self._auto_engine = create_engine(settings, autocommit=True) if self.backend == "postgresql" else None
        # Claims and acks: a commit lost in a server crash only runs a job again.
        self._relaxed_engine = (
            create_engine(settings, autocommit=True, relaxed=True) if self.backend == "postgresql" else None
        )
        # SQLite has one writer at a time, and every transaction here writes: queue
        # this process's threads on a lock rather than on the busy handler's sleeps.
        self._serial = threading.RLock() if self.backend == "sqlite" else None
        # A server round trip: a worker may ack while it claims (not on SQLite,
        # where the two would only queue for the file's one writer).
        self.ack_in_background = self.backend != "sqlite"
        key = (settings.display if not settings.in_memory else f"memory:{id(self)}", settings.table_prefix)
        watch: tuple[str, ...] = ()
        if self.backend == "sqlite" and not settings.in_memory and settings.url.database:
            watch = (settings.url.database, settings.url.database + "-wal")
        self._waker: Waker = shared_waker(key, watch)
        self._listener: PgListener | None = None
        self._listener_lock = threading.Lock()
        # MySQL: a waiting reserve is woken by interrupting its watcher's statement.
        self._watcher: MySqlWatcher | None = None
        self._bell: MySqlBell | None = None
        if self.backend == "mysql" and settings.notify:
            self._slots = mysql_slot_names(str(settings.url.database), settings.table_prefix)
            self._bell = MySqlBell(self._slots, self._own_watcher_id)
        self._schema_checked = False
        self._build_statements()

    @classmethod
    def from_config(cls, url: str | None = None, options: Mapping[str, Any] | None = None) -> Driver:
        """``DatabaseDriver(url, **options)``; the dict form passes ``connection=URL``."""
        return cls(url, **dict(options or {}))

    def __repr__(self) -> str:
        return f"<DatabaseDriver {self.name} {self.settings.display} prefix={self.settings.table_prefix!r}>"

    # -- plumbing -----------------------------------------------------------

    def _build_statements(self) -> None:
        jobs = self.tables.jobs
        self._insert_stmt = sa.insert(jobs)
        owned: tuple[Any, ...] = (
            jobs.c.seq == sa.bindparam("b_seq"),
            jobs.c.receipt == sa.bindparam("b_receipt"),
        )
        if self.backend == "postgresql":
            # No index on seq alone there: name the row by the claim index's key.
            owned = (
                jobs.c.queue == sa.bindparam("b_queue"),
                jobs.c.priority == sa.bindparam("b_priority"),
                jobs.c.visible_at == sa.bindparam("b_visible"),
                *owned,
            )
        self._owned = owned
        self._extend_stmt = sa.update(jobs).where(*owned).values(lease_until=sa.bindparam("b_until"))
        if self.backend == "postgresql":
            self._notify_stmt = sa.text("SELECT pg_notify(:channel, :queue)")

    @contextlib.contextmanager
    def _begin(self, after_commit: Callable[[sa.Connection], None] | None = None) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed on success (on SQLite, under
        this process's write lock); then ``after_commit`` runs on the same
        connection, outside any transaction.
        """
        if self._serial is not None:
            with self._serial, self.engine.begin() as conn:
                yield conn
        elif after_commit is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
                after_commit(conn)

    def _run(  # noqa: PLR0917 (driver_parts.DriverParts declares the positional ones)
        self,
        operation: str,
        fn: Callable[[sa.Connection], T],
        retry: bool = True,
        autocommit: bool = False,
        relaxed: bool = False,
        after_commit: Callable[[sa.Connection], None] | None = None,
    ) -> T:
        """Run ``fn`` in a transaction; on a dropped connection, retry with backoff.

        ``after_commit`` runs on the same connection once the transaction
        committed; it must not raise. Native errors come out as
        :mod:`jobs_core.errors` types.
        """
        self.check_open()
        self._ensure_schema()
        attempts = len(RETRY_BACKOFF) + 1 if retry else 1
        recreated = False
        # One statement that commits on its own (where the driver has such
        # engines): a connection of the autocommit engine, or with ``relaxed``
        # of the one whose commits do not wait for the disk (claims and acks
        # only, see jobs_database.engine.create_engine). Otherwise a transaction.
        engine = self._relaxed_engine if relaxed else self._auto_engine if autocommit else None
        for attempt in range(attempts):
            try:
                if engine is not None:
                    with engine.connect() as conn:
                        return fn(conn)
                with self._begin(after_commit) as conn:
                    return fn(conn)
            except sa.exc.DBAPIError as exc:
                # Only a pooled connection that died is worth a second try here;
                # a server that refuses new connections is reported at once.
                if attempt + 1 < attempts and exc.connection_invalidated and not self._closed:
                    time.sleep(RETRY_BACKOFF[attempt])
                    continue
                if not recreated and self.settings.create_schema and _missing_table(exc):
                    # The tables were dropped behind this process's back: recreate them once.
                    recreated = True
                    self._forget_schema()
                    self._ensure_schema()
                    continue
                raise translate(exc, self.settings, operation) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise translate(exc, self.settings, operation) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _forget_schema(self) -> None:
        self._schema_checked = False
        with _schema_lock:
            _schema_ready.discard((self.settings.display, self.settings.table_prefix))

    def _ensure_schema(self) -> None:
        if self._schema_checked:
            return
        key = (self.settings.display, self.settings.table_prefix)
        with _schema_lock:
            if key in _schema_ready and not self.settings.in_memory:
                self._schema_checked = True
                return
        try:
            if self._serial is not None:
                with self._serial:
                    self._check_or_upgrade()
            else:
                self._check_or_upgrade()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "checking the jobs schema") from exc
        except TimeoutError as exc:
            raise BackendError(str(exc)) from exc
        with _schema_lock:
            _schema_ready.add(key)
        self._schema_checked = True

    def _ensure_schema_in(self, conn: sa.Connection) -> None:
        """Check the schema through the caller's connection (``enqueue_in``).

        On SQLite the caller's transaction may hold the write lock, so the
        driver cannot create tables on a connection of its own; it asks for
        them to be created first instead.
        """
        if self._schema_checked:
            return
        if self.backend != "sqlite":
            self._ensure_schema()
            return
        try:
            version = schema.current_version(conn, self.tables)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "checking the jobs schema") from exc
        if version != schema.SCHEMA_VERSION:
            raise ConfigurationError(
                f"the jobs tables with prefix {self.settings.table_prefix!r} are not at schema version "
                f"{schema.SCHEMA_VERSION} (found {version}); create them before enqueueing inside a "
                f"SQLite transaction: run 'jobs db upgrade --url {self.settings.display}' or call "
                "driver.upgrade_schema() at start-up"
            )
        self._schema_checked = True

    def _check_or_upgrade(self) -> None:
        with self.engine.connect() as conn:
            version = schema.current_version(conn, self.tables)
            conn.rollback()
        if version > schema.SCHEMA_VERSION:
            raise ConfigurationError(
                f"the jobs tables with prefix {self.settings.table_prefix!r} have schema version {version}, "
                f"newer than this jobs-database supports ({schema.SCHEMA_VERSION}); upgrade jobs-database"
            )
        if version < schema.SCHEMA_VERSION:
            if not self.settings.create_schema:
                raise ConfigurationError(
                    f"the jobs tables with prefix {self.settings.table_prefix!r} are at schema version "
                    f"{version}, this driver needs {schema.SCHEMA_VERSION}: run "
                    f"'jobs db upgrade --url {self.settings.display}' (or set create_schema=true)"
                )
            schema.upgrade(self.engine, self.tables)

    def upgrade_schema(self) -> tuple[int, int]:
        """Create or upgrade the tables now; return the schema versions ``(before, after)``."""
        self.check_open()
        try:
            result = schema.upgrade(self.engine, self.tables)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "upgrading the jobs schema") from exc
        self._schema_checked = True
        return result

    def schema_version(self) -> int:
        """The schema version stored in the database (0 when there are no tables)."""
        self.check_open()
        try:
            with self.engine.connect() as conn:
                return schema.current_version(conn, self.tables)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "reading the schema version") from exc

    # -- enqueue ------------------------------------------------------------

    def _rows(self, messages: Sequence[Message], bodies: Sequence[bytes], now: float) -> list[dict[str, Any]]:
        return [
            {
                "id": m.id,
                "queue": m.queue,
                "priority": m.priority,
                "visible_at": m.available_at,
                "state": WAITING,
                "receipt": None,
                "unique_key": m.unique_key,
                "unique_until": None if m.unique_key is None or m.unique_ttl is None else now + m.unique_ttl,
                "created_at": m.created_at,
                "body": b,
                "tenant": self._tenants.stored_tenant(m),
            }
            for m, b in zip(messages, bodies, strict=True)
        ]

    def _insert(
        self, conn: sa.Connection, messages: Sequence[Message], bodies: Sequence[bytes]
    ) -> list[str | None]:
        now = time.time()
        channel = (
            self.tables.notify_channel if self.backend == "postgresql" and self.settings.notify else None
        )
        if all(m.unique_key is None for m in messages) and not self._tenants.involved(messages):
            # The common case, kept lean: one tuple per row, in BulkInsert's column order.
            values = [_plain_row(m, b) for m, b in zip(messages, bodies, strict=True)]
            notified = self._bulk.insert(conn, values, channel, now)
            if channel is not None:
                for queue in sorted({v[1] for v in values if v[3] <= now} - notified):
                    conn.execute(self._notify_stmt, {"channel": channel, "queue": queue})
            return [v[0] for v in values]
        rows = self._rows(messages, bodies, now)
        notified = set()
        for bulk, tenanted in ((self._bulk, False), (self._bulk_tenant, True)):
            plain = [
                tuple(r[c] for c in bulk.columns)
                for r in rows
                if r["unique_key"] is None and (r["tenant"] is not None) == tenanted
            ]
            if plain:
                notified |= bulk.insert(conn, plain, channel, now)
        tenants = {(r["queue"], r["tenant"]) for r in rows if r["tenant"] is not None}
        if tenants:
            self._tenants.record(conn, tenants, self)
        ids: list[str | None] = []
        for row in rows:
            if row["unique_key"] is None or self._insert_keyed(conn, row, now):
                ids.append(row["id"])
            else:
                ids.append(None)
        if channel is not None:
            due = {
                r["queue"] for r, i in zip(rows, ids, strict=True) if i is not None and r["visible_at"] <= now
            }
            for queue in sorted(due - notified):
                conn.execute(self._notify_stmt, {"channel": channel, "queue": queue})
        return ids

    def _insert_keyed(self, conn: sa.Connection, row: dict[str, Any], now: float) -> bool:
        """Insert a row with a unique key, unless an unfinished job holds the key; whether it was
        (or its id is an unfinished job's already: a repeated enqueue, stored once).
        """
        jobs = self.tables.jobs
        conn.execute(
            sa.update(jobs)
            .where(
                jobs.c.unique_key == row["unique_key"],
                jobs.c.unique_until.is_not(None),
                jobs.c.unique_until <= now,
            )
            .values(unique_key=None)
        )
        try:
            with conn.begin_nested():
                conn.execute(self._insert_stmt, row)
        except sa.exc.IntegrityError:
            stored = conn.execute(sa.select(jobs.c.seq).where(jobs.c.id == row["id"]).limit(1)).first()
            return stored is not None
        return True

    def _stream(self, conn: sa.Connection, messages: Sequence[Message]) -> list[str | None]:
        """PostgreSQL, a large batch in the driver's own transaction: check, encode and
        ``COPY`` it a chunk at a time, so that building the messages (see
        :class:`~jobs_core.message.MessageBatch`) overlaps the server storing them.

        A message refused by :meth:`validate` aborts the transaction: nothing is stored.
        Rows with a unique key are inserted one by one after the ``COPY``.
        """
        now = time.time()
        ids: list[str | None] = []
        keyed: list[tuple[int, dict[str, Any]]] = []
        due: set[str] = set()

        def batch_rows(batch: MessageBatch) -> Iterator[tuple[Any, ...]]:
            # A bulk dispatch: shared fields checked once, no message object per job.
            self.validate(batch[:1])
            common = batch.common
            queue, priority, visible_at = common["queue"], common["priority"], common["available_at"]
            created_at = common["created_at"]
            if common["unique_key"] is not None:
                yield from rows()  # one row at a time, as for any keyed messages
                return
            if visible_at <= now:
                due.add(queue)
            for start in range(0, len(batch), STREAM_CHUNK):
                chunk_ids, bodies = batch.encoded(start, start + STREAM_CHUNK)
                self.check_sizes(bodies)
                ids.extend(chunk_ids)
                for ident, body in zip(chunk_ids, bodies, strict=True):
                    yield (ident, queue, priority, visible_at, WAITING, created_at, body)

        def rows() -> Iterator[tuple[Any, ...]]:
            for start in range(0, len(messages), STREAM_CHUNK):
                chunk = messages[start : start + STREAM_CHUNK]
                for m, b in zip(chunk, self.validate(chunk), strict=True):
                    if m.unique_key is not None:
                        keyed.append((len(ids), self._rows([m], [b], now)[0]))
                        ids.append(None)
                        continue
                    ids.append(m.id)
                    if m.available_at <= now:
                        due.add(m.queue)
                    yield _plain_row(m, b)

        self._bulk.stream(conn, batch_rows(messages) if isinstance(messages, MessageBatch) else rows())
        for index, row in keyed:
            if self._insert_keyed(conn, row, now):
                ids[index] = row["id"]
                if row["visible_at"] <= now:
                    due.add(row["queue"])
        if self.settings.notify:
            for queue in sorted(due):
                conn.execute(self._notify_stmt, {"channel": self.tables.notify_channel, "queue": queue})
        return ids

    def _one_statement(self, messages: Sequence[Message]) -> bool:
        """Whether enqueueing ``messages`` is a single atomic statement (so needs no transaction)."""
        return (
            self.backend == "postgresql"
            and len(messages) <= SMALL_BATCH
            and all(m.unique_key is None for m in messages)
        )

    def enqueue(self, messages: Sequence[Message]) -> list[str | None]:
        """Insert ``messages`` in one transaction (all or nothing)."""
        self.check_open()
        self._tenants.queues(self._read_tenants)
        tenanted = self._tenants.involved(messages)
        if self.backend == "postgresql" and len(messages) > SMALL_BATCH and not tenanted:
            ids = self._run("enqueue", lambda conn: self._stream(conn, messages))
            self._waker.notify()
            return ids
        bodies = self.validate(messages)
        if not messages:
            return []
        ring = self._ring if self._bell is not None and _any_due(messages, time.time()) else None
        ids = self._run(
            "enqueue",
            lambda conn: self._insert(conn, messages, bodies),
            autocommit=self._one_statement(messages) and not tenanted,
            after_commit=ring,
        )
        if tenanted and carries_tenant(messages):
            self._tenants.mark({m.queue for m in messages})
        self._waker.notify()
        return ids

    def _ring(self, conn: sa.Connection) -> None:
        """MySQL, after an enqueue committed: wake the workers waiting in other processes.

        Never raises: the jobs are stored, and a worker that was not woken
        still finds them at its next check.
        """
        assert self._bell is not None
        try:
            self._bell.ring(conn.connection.dbapi_connection)
        except Exception as exc:
            log.debug("could not wake the waiting workers (%s: %s)", type(exc).__name__, exc)

    def _own_watcher_id(self) -> int | None:
        watcher = self._watcher
        return None if watcher is None else watcher.connection_id

    def enqueue_in(self, transaction: Any, messages: Sequence[Message]) -> list[str | None]:
        """Insert ``messages`` in the caller's transaction (a SQLAlchemy ``Connection`` or ``Session``).

        The jobs exist if and only if the caller commits. On PostgreSQL the
        wake-up ``NOTIFY`` is sent at that commit.
        """
        self.check_open()
        self.require(Capability.TRANSACTIONAL_ENQUEUE, "enqueue_in")
        conn = transaction
        if not isinstance(conn, sa.Connection):
            get_connection = getattr(transaction, "connection", None)
            if not callable(get_connection):
                raise ConfigurationError(
                    f"enqueue_in needs a SQLAlchemy Connection or Session, got {type(transaction).__name__}"
                )
            conn = get_connection()
        dialect = conn.dialect.name
        expected = {"sqlite": ("sqlite",), "postgresql": ("postgresql",), "mysql": ("mysql", "mariadb")}
        if dialect not in expected[self.backend]:
            raise ConfigurationError(
                f"enqueue_in got a {dialect} connection, but this driver stores jobs in "
                f"{self.settings.location} ({self.backend})"
            )
        bodies = self.validate(messages)
        self._ensure_schema_in(conn)
        # Read through the caller's connection: one of this driver's own would wait for the
        # write lock that the caller's transaction may hold (SQLite, MySQL), for ever.
        self._tenants.queues(lambda read: read(conn))
        if carries_tenant(messages):
            self._tenants.mark({m.queue for m in messages})
        try:
            return self._insert(conn, messages, bodies)
        except sa.exc.SQLAlchemyError as exc:
            if isinstance(exc, sa.exc.DBAPIError) or not isinstance(exc, JobsError):
                raise translate(exc, self.settings, "enqueue in transaction") from exc
            raise

    def inject_raw(self, queue: str, body: bytes) -> None:
        """Insert ``body`` as-is on ``queue``, as a foreign producer might."""
        validate_queue_name(queue)
        now = time.time()
        row = {
            "id": new_id(),
            "queue": queue,
            "priority": 0,
            "visible_at": now,
            "state": WAITING,
            "receipt": None,
            "unique_key": None,
            "unique_until": None,
            "created_at": now,
            "body": bytes(body),
        }
        self._run("inject_raw", lambda conn: conn.execute(self._insert_stmt, row))
        self._waker.notify()

    # -- reserve ------------------------------------------------------------

    def _claim(self, queues: Sequence[str], limit: int, lease: float) -> list[Delivery]:
        token = os.urandom(8).hex() + ":"
        fair = self._tenants.queues(self._read_tenants)
        claimers = [self._tenants.claim if queue in fair else self._claimer.claim for queue in queues]

        def claim(conn: sa.Connection) -> list[tuple[Handle, str, bytes, float]]:
            now = time.time()
            until = now + lease
            rows: list[tuple[Handle, str, bytes, float]] = []
            for queue, claimer in zip(queues, claimers, strict=True):
                got = claimer(conn, queue, limit=limit - len(rows), now=now, until=until, token=token)
                rows.extend(
                    ((seq, queue, priority, visible_at, ctid), receipt, body, until)
                    for seq, receipt, body, priority, visible_at, ctid in got
                )
                if len(rows) >= limit:
                    break
            return rows

        # PostgreSQL: one queue's claim commits statement by statement, on the engine whose commits
        # do not wait for the disk. Each statement of a claim in tenants' turns is a claim of its own
        # (atomic, SKIP LOCKED) or the turns' bookkeeping, which needs no atomicity with them.
        single = self._claimer.single_statement and len(queues) == 1
        rows = self._run("reserve", claim, autocommit=single, relaxed=single)
        if not rows:
            return []
        deliveries: list[tuple[tuple[int, float, int], Delivery]] = []
        malformed: list[tuple[Handle, str, bytes, str]] = []
        for handle, receipt, body, until in rows:
            try:
                message = Message.decode(body)
            except MalformedMessage as exc:
                malformed.append((handle, receipt, body, f"malformed message: {exc}"))
                continue
            if message.queue != handle[1]:  # a row written by other means, naming another queue
                message = message.replace(queue=handle[1])
            deliveries.append(
                (
                    (-message.priority, message.available_at, handle[0]),
                    Delivery(message, receipt, until, handle),
                )
            )
        if malformed:
            self._run("moving malformed messages to the failed store", lambda c: self._fail_raw(c, malformed))
        if len(queues) == 1:
            deliveries.sort(key=lambda pair: pair[0])
        else:
            order = {q: i for i, q in enumerate(queues)}
            deliveries.sort(key=lambda pair: (order.get(pair[1].handle[1], 0), pair[0]))
        return [d for _, d in deliveries]

    def _read_tenants(self, read: Callable[[sa.Connection], list[str]]) -> list[str]:
        return self._run("reading the queues of tenants", read)

    def _fail_raw(self, conn: sa.Connection, rows: list[tuple[Handle, str, bytes, str]]) -> None:
        jobs, failed = self.tables.jobs, self.tables.failed
        now = time.time()
        for handle, receipt, body, error in rows:
            queue = handle[1]
            gone = conn.execute(
                sa.delete(jobs).where(*self._owned), self._handle_params(handle, receipt)
            ).rowcount
            if not gone:
                continue
            ident = receipt.rsplit(":", 1)[-1]
            conn.execute(
                sa.insert(failed).values(
                    id=f"raw-{ident}-{uuid.uuid4().hex[:8]}",
                    queue=queue,
                    name="",
                    attempts=0,
                    error=error,
                    failed_at=now,
                    malformed=True,
                    body=body,
                )
            )

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages, waiting up to ``timeout`` seconds for one."""
        self.check_open()
        queues = [validate_queue_name(q) for q in queues]
        if limit <= 0 or not queues:
            return []
        deadline = time.monotonic() + max(0.0, timeout)
        watcher = None
        if timeout > 0:
            self._start_listener()
            watcher = self._start_watcher()
        while not self._closed:
            epoch = watcher.armed_epoch() if watcher is not None else None
            generation = self._waker.generation
            found = self._claim(queues, limit, lease)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            if (
                watcher is not None
                and not watcher.keep(deadline + MYSQL_LINGER, epoch)
                and watcher.arm(deadline + MYSQL_LINGER, min(remaining, self.settings.connect_timeout))
            ):
                continue  # not watching since before that claim: now watching, claim once more
            wait = min(remaining, self.settings.poll_interval)
            if wait > 0.05:
                due = self._next_due(queues)
                if due is not None:
                    wait = min(wait, max(0.001, due - time.time()))
            self._waker.wait(generation, wait)
        return []

    def _next_due(self, queues: Sequence[str]) -> float | None:
        """When the earliest delayed job or lease of ``queues`` comes due (``None``: no job)."""
        jobs = self.tables.jobs
        due_at = sa.case((jobs.c.state == WAITING, jobs.c.visible_at), else_=jobs.c.lease_until)
        stmt = sa.select(sa.func.min(due_at)).where(jobs.c.queue.in_(list(queues)))
        value = self._run("reserve", lambda conn: conn.execute(stmt).scalar())
        return None if value is None else float(value)

    def _start_watcher(self) -> MySqlWatcher | None:
        """MySQL: this driver's watcher (started on first use), or ``None``."""
        if self._bell is None or self._watcher is not None:
            return self._watcher
        with self._listener_lock:
            if self._watcher is None and not self._closed:
                self._watcher = MySqlWatcher(
                    self.engine, self.tables.jobs.name, self._slots, self._waker, self.settings.poll_interval
                )
        return self._watcher

    def _start_listener(self) -> None:
        if self.backend != "postgresql" or not self.settings.notify or self._listener is not None:
            return
        with self._listener_lock:
            if self._listener is None and not self._closed:
                self._listener = PgListener(self.engine, self.tables.notify_channel, self._waker)
                self._listener.wait_ready(self.settings.connect_timeout)

    # -- finishing ----------------------------------------------------------

    def ack(self, delivery: Delivery) -> None:
        """Delete the job and count it completed; ignored if the lease was lost."""
        self.ack_many([delivery])

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack a batch: one ``DELETE`` and one completed-count row per queue.

        Jobs of a workflow are deleted one by one in a second transaction
        that also counts them in their workflow records (``WORKFLOWS``).
        """
        self._ack_many(deliveries, ())

    def ack_freeing_slots(
        self,
        deliveries: Sequence[Delivery],
        slots: Sequence[tuple[str, str]],
        results: Sequence[str | None] | None = None,
    ) -> None:
        """Ack a batch and delete the ended jobs' slot rows: in the ack's transaction (SQLite,
        MySQL/MariaDB), or in one statement after it where the ack is one statement of its own
        (PostgreSQL).
        """
        if results is not None:
            self._ack_results(deliveries, results, slots)
            return
        self._ack_many(deliveries, slots)

    def _ack_many(self, deliveries: Sequence[Delivery], slots: Sequence[tuple[str, str]]) -> None:
        if not deliveries:
            self.release_slots(slots)
            return
        if any(WORKFLOW_HEADER in d.message.headers for d in deliveries):
            flows = [d for d in deliveries if WORKFLOW_HEADER in d.message.headers]
            self._ack_workflow_jobs(flows)
            deliveries = [d for d in deliveries if WORKFLOW_HEADER not in d.message.headers]
            if not deliveries:
                self.release_slots(slots)
                return
        by_queue: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_queue[delivery.handle[1]].append(delivery)

        def ack(conn: sa.Connection) -> list[Delivery]:
            now = time.time()
            missed: list[Delivery] = []
            for queue, group in by_queue.items():
                handles = [d.handle for d in group]
                missing = self._acker.ack(conn, queue, handles, [d.receipt for d in group], now)
                missed.extend(group[i] for i in missing)
            if slots and not single:  # in the ack's transaction
                conn.execute(self._slots_delete(slots))
            return missed

        single = self._acker.single_statement and len(by_queue) == 1
        missed = self._run("ack", ack, autocommit=single, relaxed=single)
        if slots and single:  # the ack committed on its own: a statement after it
            self.release_slots(slots)
        if not missed:
            return
        if self.backend == "postgresql":
            for delivery in missed:
                # Moved since the claim (a lease extension), watched, or the lease was lost.
                self._run("ack", self._ack_moved(delivery), autocommit=True, relaxed=True)
        self._ack_watched(missed)

    def _ack_watched(
        self, deliveries: Sequence[Delivery], results: dict[str, str | None] | None = None
    ) -> None:
        """Ack, through the workflow path, those of ``deliveries`` whose rows a plain ack left as watched.

        A watched job (``after=`` waits for it, ``jobs.watched``) is counted as
        a job of the workflow record named by its own id. Only rows still
        leased under the delivery's receipt are deleted and counted there.
        """
        jobs = self.tables.jobs
        by_seq = {int(d.handle[0]): d for d in deliveries}
        stmt = sa.select(jobs.c.seq).where(jobs.c.seq.in_(list(by_seq)), jobs.c.watched.is_not(None))
        rows = self._run("ack", lambda conn: conn.execute(stmt).all())
        if rows:
            flows = [_as_workflow_job(by_seq[int(row[0])]) for row in rows]
            self._ack_workflow_jobs(flows, results)

    def _flow_message(self, conn: sa.Connection, message: Message) -> Message | None:
        """The message to count in a workflow as its job is removed in ``conn``'s transaction, or ``None``.

        A job of a workflow carries its header; a watched job (a workflow
        record of kind ``job`` has its id) is counted as if it carried it.
        """
        if WORKFLOW_HEADER in message.headers:
            return message
        table = self.workflows_table
        row = conn.execute(sa.select(table.c.kind).where(table.c.id == message.id)).first()
        if row is None or row.kind != JOB:
            return None
        return message.replace(headers={**message.headers, WORKFLOW_HEADER: message.id})

    def _ack_workflow_jobs(
        self, deliveries: Sequence[Delivery], results: dict[str, str | None] | None = None
    ) -> None:
        """Delete each job still leased under its receipt and count it in its workflow, in one transaction.

        With ``results`` (receipt to JSON text, ``STATUS``), each deleted job's
        result is kept in the same transaction.
        """
        # One lock order for every transaction: records by id.
        ordered = sorted(deliveries, key=lambda d: d.message.headers[WORKFLOW_HEADER])
        store_of: list[TransactionStore] = []

        def ack(conn: sa.Connection) -> None:
            now = time.time()
            store = TransactionStore(self, conn)
            store_of[:] = [store]
            fast = self._count_batch_successes(conn, ordered, now)
            if fast is None:
                if self.backend == "postgresql":
                    # As for plain acks: a commit lost in a server crash loses the
                    # count and its follow-ups with the ack, and the jobs run again.
                    conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
                finished = self._delete_owned(conn, ordered, now)
                removed = list(finished)
            else:
                counted, deleted = fast
                rest = [d for d in ordered if d.receipt not in deleted]
                finished = [] if counted else [d for d in ordered if d.receipt in deleted]
                removed = [d for d in ordered if d.receipt in deleted]
                if finished:
                    queue = finished[0].handle[1]
                    completed = self.tables.completed
                    conn.execute(
                        sa.insert(completed).values(queue=queue, finished_at=now, count=len(finished))
                    )
                if rest:
                    more = self._delete_owned(conn, rest, now)
                    finished += more
                    removed += more
            if results is not None:
                self._keep_results(conn, removed, results, now)
            for delivery in finished:
                job_finished(store, delivery.message, True, delivery.result)
            store.flush()

        self._run("ack", ack, after_commit=self._after_workflow(store_of))
        if store_of and store_of[0].enqueued:
            self._waker.notify()

    def _count_batch_successes(
        self, conn: sa.Connection, deliveries: Sequence[Delivery], now: float
    ) -> tuple[bool, set[str]] | None:
        """PostgreSQL, the jobs of one batch on one queue: delete them by their
        addresses as claimed and, when that is all their completion does, count
        them succeeded, in one statement.

        Counting is all when the batch is running, has no failed job, and keeps
        jobs pending after these (nothing fires, nothing else changes). Returns
        whether they were counted, and the receipts of the deliveries whose rows
        were deleted (the others moved since their claim, and are left to the
        caller, as are the deleted ones when they were not counted; their
        completed count too). ``None`` when the deliveries are not all of one
        batch and one queue (nothing was done).
        """
        if self.backend != "postgresql" or not deliveries:
            return None
        first = deliveries[0]
        workflow_id, queue = first.message.headers[WORKFLOW_HEADER], first.handle[1]
        if any(d.handle[1] != queue or d.message.headers[WORKFLOW_HEADER] != workflow_id for d in deliveries):
            return None
        jobs, completed = self.tables.jobs.name, self.tables.completed.name
        flows = self.workflows_table.name
        # The UPDATE takes the batch's row lock (and re-reads the row after a
        # wait) before its condition is decided. As for plain acks, the commit
        # does not wait for the disk (set_config: local to the transaction).
        statement = sa.text(
            f"WITH d AS (DELETE FROM {jobs} WHERE ctid = ANY(CAST(:ctids AS tid[])) "
            "AND receipt = ANY(CAST(:receipts AS varchar[])) RETURNING seq), "
            f"u AS (UPDATE {flows} SET succeeded = succeeded + (SELECT count(*) FROM d) "
            "WHERE id = :wid AND kind = 'batch' AND status = 'running' AND failed = 0 "
            "AND total - succeeded - cancelled > (SELECT count(*) FROM d) RETURNING 1), "
            f"c AS (INSERT INTO {completed} (queue, finished_at, count) "
            "SELECT :queue, :now, count(*) FROM d WHERE EXISTS (SELECT 1 FROM u) HAVING count(*) > 0) "
            "SELECT d.seq, (SELECT count(*) FROM u), "
            "(SELECT set_config('synchronous_commit', 'off', true)) FROM d"
        )
        params = {
            "ctids": "{" + ",".join(f'"{d.handle[4]}"' for d in deliveries) + "}",
            "receipts": "{" + ",".join(d.receipt for d in deliveries) + "}",
            "wid": workflow_id,
            "queue": queue,
            "now": now,
        }
        rows = conn.execute(statement, params).all()
        counted = bool(rows) and bool(rows[0][1])
        deleted = {int(row[0]) for row in rows}
        return counted, {d.receipt for d in deliveries if int(d.handle[0]) in deleted}

    def _delete_owned(
        self, conn: sa.Connection, deliveries: Sequence[Delivery], now: float
    ) -> list[Delivery]:
        """Delete the rows still leased under the receipts of ``deliveries``, count them
        completed, and return the deliveries whose rows were deleted (in their order).
        """
        jobs, completed = self.tables.jobs, self.tables.completed
        by_queue: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_queue[delivery.handle[1]].append(delivery)
        deleted: set[str] = set()
        one = sa.delete(jobs).where(*self._owned)
        for queue, group in by_queue.items():
            count = 0
            if self.backend == "postgresql":
                # By the rows' addresses as claimed (one statement, counted there);
                # a row moved since is found by its claim-index key.
                handles = [d.handle for d in group]
                missing = set(
                    self._acker.ack(conn, queue, handles, [d.receipt for d in group], now, plain=False)
                )
                deleted.update(d.receipt for i, d in enumerate(group) if i not in missing)
                rest = [group[i] for i in sorted(missing)]
            elif conn.dialect.delete_returning:
                stmt = (
                    sa.delete(jobs)
                    .where(
                        jobs.c.seq.in_([d.handle[0] for d in group]),
                        jobs.c.receipt.in_([d.receipt for d in group]),
                    )
                    .returning(jobs.c.seq)
                )
                gone = {int(row[0]) for row in conn.execute(stmt)}
                found = [d for d in group if int(d.handle[0]) in gone]
                deleted.update(d.receipt for d in found)
                count = len(found)
                rest = []
            else:
                rest = group
            for delivery in rest:
                if conn.execute(one, self._owned_params(delivery)).rowcount:
                    deleted.add(delivery.receipt)
                    count += 1
            if count:
                conn.execute(sa.insert(completed).values(queue=queue, finished_at=now, count=count))
        return [d for d in deliveries if d.receipt in deleted]

    def _after_workflow(self, store_of: list[TransactionStore]) -> Callable[[sa.Connection], None] | None:
        """MySQL: ring the waiting workers once a workflow transaction that stored jobs committed."""
        if self._bell is None:
            return None

        def ring(conn: sa.Connection) -> None:
            if store_of and store_of[0].enqueued:
                self._ring(conn)

        return ring

    def _cancel_in_workflow(
        self, conn: sa.Connection, messages: Message | Sequence[Message], store_of: list[Any]
    ) -> None:
        """Count the jobs of ``messages`` cancelled in their workflows, in the open transaction
        that removed them (records taken in one lock order: by id).
        """
        many = [messages] if isinstance(messages, Message) else messages
        store = TransactionStore(self, conn)
        store_of[:] = [store]
        for message in sorted(many, key=lambda m: m.headers[WORKFLOW_HEADER]):
            job_cancelled(store, message)
        store.flush()

    def _after_cancel_in_workflow(self, store_of: list[Any]) -> Callable[[sa.Connection], None] | None:
        """What to run after a cancel's commit (see :meth:`_after_workflow`)."""
        return self._after_workflow(store_of)

    def _notify_after_workflow(self, store_of: list[Any]) -> None:
        """Wake this process's waiting workers if the committed workflow transaction stored jobs."""
        if store_of and store_of[0].enqueued:
            self._waker.notify()

    def insert_in(self, conn: sa.Connection, messages: Sequence[Message]) -> None:
        """Store ``messages`` in the open transaction of ``conn`` (checked first)."""
        if self.backend == "postgresql" and len(messages) > SMALL_BATCH:
            self._stream(conn, messages)
        else:
            self._insert(conn, messages, self.validate(messages))

    def insert_failed(self, conn: sa.Connection, message: Message, error: str) -> None:
        """Put ``message`` into the failed store in the open transaction of ``conn``."""
        failed = self.tables.failed
        conn.execute(sa.delete(failed).where(failed.c.id == message.id))
        conn.execute(
            sa.insert(failed).values(
                id=message.id,
                queue=message.queue,
                name=message.name[:255],
                attempts=message.attempts,
                error=error,
                failed_at=time.time(),
                malformed=False,
                body=message.encode(),
            )
        )

    @contextlib.contextmanager
    def workflow_transaction(self) -> Iterator[TransactionStore]:
        """One database transaction; the records and jobs written through the store commit together."""
        self.check_open()
        self._ensure_schema()
        store_of: list[TransactionStore] = []
        try:
            with self._begin(self._after_workflow(store_of)) as conn:
                store = TransactionStore(self, conn)
                store_of.append(store)
                yield store
                store.flush()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "workflow") from exc
        if store.enqueued:
            self._waker.notify()

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The committed record of ``workflow_id``, or ``None``."""
        table = self.workflows_table
        row = self._run(
            "workflow", lambda conn: conn.execute(sa.select(table).where(table.c.id == workflow_id)).first()
        )
        return None if row is None else to_record(row)

    def workflows(self, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[WorkflowRecord]:
        """Committed records of ``kind``, newest first."""
        table = self.workflows_table
        select = sa.select(table).order_by(table.c.created_at.desc(), table.c.id).limit(limit).offset(offset)
        if kind is not None:
            select = select.where(table.c.kind == kind)
        rows = self._run("workflows", lambda conn: conn.execute(select).all())
        return [to_record(row) for row in rows]

    def _ack_moved(self, delivery: Delivery) -> Callable[[sa.Connection], None]:
        return lambda conn: self._acker.ack_moved(conn, delivery.handle, delivery.receipt, time.time())

    def _owned_params(self, delivery: Delivery) -> dict[str, Any]:
        return self._handle_params(delivery.handle, delivery.receipt)

    @staticmethod
    def _handle_params(handle: Handle, receipt: str) -> dict[str, Any]:
        seq, queue, priority, visible_at, _ = handle
        return {
            "b_seq": seq,
            "b_receipt": receipt,
            "b_queue": queue,
            "b_priority": priority,
            "b_visible": visible_at,
        }

    def _put_back(self, delivery: Delivery, visible_at: float, body: bytes | None, operation: str) -> None:
        jobs = self.tables.jobs
        values: dict[str, Any] = {
            "state": WAITING,
            "receipt": None,
            "lease_until": None,
            "visible_at": visible_at,
        }
        if body is not None:
            values["body"] = body
        stmt = sa.update(jobs).where(*self._owned).values(**values)
        updated = self._run(operation, lambda conn: conn.execute(stmt, self._owned_params(delivery)).rowcount)
        if updated:
            self._waker.notify()

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Back on the queue after ``delay`` seconds, ``attempts + 1``, error recorded."""
        now = time.time()
        message = delivery.message.replace(
            attempts=delivery.message.attempts + 1, last_error=error, available_at=now + max(0.0, delay)
        )
        self._put_back(delivery, message.available_at, message.encode(), "retry")

    def release(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Back on the queue unrun (attempts unchanged)."""
        if delay > 0:
            message = delivery.message.replace(available_at=time.time() + delay)
            self._put_back(delivery, message.available_at, message.encode(), "release")
        else:
            self._put_back(delivery, min(delivery.message.available_at, time.time()), None, "release")

    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease; ``False`` if another worker holds it now."""
        params = {**self._owned_params(delivery), "b_until": time.time() + lease}
        return bool(self._run("extend", lambda conn: conn.execute(self._extend_stmt, params).rowcount))

    def fail(self, delivery: Delivery, error: str) -> None:
        """Move the job to the failed store with ``attempts + 1``."""
        message = delivery.message.replace(attempts=delivery.message.attempts + 1, last_error=error)
        jobs, failed = self.tables.jobs, self.tables.failed
        store_of: list[TransactionStore] = []

        def move(conn: sa.Connection) -> None:
            gone = conn.execute(sa.delete(jobs).where(*self._owned), self._owned_params(delivery)).rowcount
            if not gone:
                return
            conn.execute(sa.delete(failed).where(failed.c.id == message.id))
            conn.execute(
                sa.insert(failed).values(
                    id=message.id,
                    queue=delivery.handle[1],
                    name=message.name[:255],
                    attempts=message.attempts,
                    error=error,
                    failed_at=time.time(),
                    malformed=False,
                    body=message.encode(),
                )
            )
            counted = self._flow_message(conn, message)
            if counted is not None:
                store = TransactionStore(self, conn)
                store_of[:] = [store]
                job_finished(store, counted, False, error=error)
                store.flush()

        self._run("fail", move, after_commit=self._after_workflow(store_of))
        if store_of and store_of[0].enqueued:
            self._waker.notify()

    # -- lifecycle ----------------------------------------------------------

    def ping(self) -> None:
        """Run ``SELECT 1``; raise :class:`~jobs_core.errors.BackendUnavailable` if the database is down."""
        self.check_open()
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.settings, "ping") from exc

    def close(self) -> None:
        """Stop the listener, close the pool, wake waiting reserves. Safe to call twice."""
        if self._closed:
            return
        super().close()
        self._waker.notify()
        if self._listener is not None:
            self._listener.stop()
        if self._watcher is not None:
            self._watcher.stop()
        self.engine.dispose()
        for engine in (self._auto_engine, self._relaxed_engine):
            if engine is not None:
                engine.dispose()


def _as_workflow_job(delivery: Delivery) -> Delivery:
    """``delivery`` of a watched job, its message carrying its own id as its workflow."""
    message = delivery.message
    return dataclasses.replace(
        delivery, message=message.replace(headers={**message.headers, WORKFLOW_HEADER: message.id})
    )
