"""Flow control of the database driver: paused queues, rate windows and concurrency slots in SQL.

:class:`FlowOperations` is a mixin of :class:`~jobs_database.driver.DatabaseDriver`.
Each rate limit or concurrency key has a row in ``flow_keys`` that a taker
locks (``SELECT ... FOR UPDATE`` on PostgreSQL and MySQL/MariaDB; SQLite's
``BEGIN IMMEDIATE`` write lock) for the one short transaction in which it
reads and updates the key's state, so concurrent takers from any number of
processes queue on that row, never on each other's keys. Times are the
caller's ``time.time()``, as for every other column.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from jobs_core.flow_state import TokenGrant, decode_window, encode_window, take_from_window
from jobs_core.message import validate_queue_name
from sqlalchemy.dialects import postgresql, sqlite

from jobs_database.driver_parts import DriverParts
from jobs_database.schema import flow_table

T = TypeVar("T")


def _json_values(values: list[str]) -> sa.Select[Any]:
    """SQLite: the rows of ``values``, sent as one JSON text (``json_each``)."""
    listed: sa.BindParameter[str] = sa.bindparam("among", json.dumps(values), unique=True)
    return sa.select(sa.literal_column("value")).select_from(sa.func.json_each(listed))


class FlowOperations(DriverParts):
    """``QUEUE_PAUSE``, ``RATE_LIMITS`` and ``CONCURRENCY_LIMITS`` in SQL."""

    def _insert_missing(self, table: sa.Table, values: dict[str, Any]) -> Any:
        """An ``INSERT`` that does nothing when the primary key is already there.

        Run it with :meth:`_inserted`: PostgreSQL reports no row count for it.
        """
        if self.backend == "postgresql":
            key = next(iter(table.primary_key.columns))
            return postgresql.insert(table).values(**values).on_conflict_do_nothing().returning(key)
        if self.backend == "sqlite":
            return sqlite.insert(table).values(**values).on_conflict_do_nothing()
        return sa.insert(table).values(**values).prefix_with("IGNORE")

    def _inserted(self, conn: sa.Connection, stmt: Any) -> bool:
        """Run an :meth:`_insert_missing` statement; whether it inserted the row."""
        result = conn.execute(stmt)
        if self.backend == "postgresql":
            return result.first() is not None
        return bool(result.rowcount)

    def _ensure_key(self, name: str) -> None:
        """Create the ``flow_keys`` row ``name`` if missing, in a transaction of its own.

        Once per driver and key, before the transaction that locks it: an
        insert and a locking read of the same missing row in one transaction
        deadlock with another taker's on MySQL.
        """
        known: set[str] = self.__dict__.setdefault("_flow_keys_known", set())
        if name in known:
            return
        insert = self._insert_missing(flow_table(self.tables, "flow_keys"), {"name": name, "data": None})
        self._run("creating a flow-control key", lambda c: self._inserted(c, insert))
        known.add(name)

    def _lock_key(self, conn: sa.Connection, name: str) -> str | None:
        """Lock the ``flow_keys`` row ``name`` (see :meth:`_ensure_key`) for this transaction; its data."""
        keys = flow_table(self.tables, "flow_keys")
        stmt = sa.select(keys.c.data).where(keys.c.name == name).with_for_update()
        value = conn.execute(stmt).scalar()
        return None if value is None else str(value)

    # -- QUEUE_PAUSE ----------------------------------------------------------

    def pause_queue(self, queue: str) -> bool:
        """Insert the queue's row into ``paused_queues``."""
        validate_queue_name(queue)
        paused = flow_table(self.tables, "paused_queues")
        stmt = self._insert_missing(paused, {"queue": queue, "paused_at": time.time()})
        return self._run("pausing a queue", lambda conn: self._inserted(conn, stmt))

    def resume_queue(self, queue: str) -> bool:
        """Delete the queue's row from ``paused_queues``."""
        validate_queue_name(queue)
        paused = flow_table(self.tables, "paused_queues")
        stmt = sa.delete(paused).where(paused.c.queue == queue)
        return bool(self._run("resuming a queue", lambda conn: conn.execute(stmt).rowcount))

    def paused_queues(self) -> list[str]:
        """The rows of ``paused_queues``, sorted."""
        paused = flow_table(self.tables, "paused_queues")
        stmt = sa.select(paused.c.queue).order_by(paused.c.queue)
        return [str(q) for q in self._run("listing paused queues", lambda conn: conn.execute(stmt).scalars())]

    # -- RATE_LIMITS ----------------------------------------------------------

    def take_tokens(self, key: str, count: int, per: float, want: int = 1) -> TokenGrant:
        """Read, update and write back the key's window under its row lock."""
        keys = flow_table(self.tables, "flow_keys")
        name = f"r:{key}"

        def take(conn: sa.Connection) -> TokenGrant:
            window = decode_window(self._lock_key(conn, name))
            grant = take_from_window(window, count, per, want, time.time())
            if grant.granted:
                conn.execute(sa.update(keys).where(keys.c.name == name).values(data=encode_window(window)))
            return grant

        self._ensure_key(name)
        return self._run("taking rate-limit tokens", take)

    # -- CONCURRENCY_LIMITS ---------------------------------------------------

    def acquire_slot(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """One slot: :meth:`acquire_slots` for one holder."""
        return self.acquire_slots(key, limit, [holder], lease) == 1

    def acquire_slots(self, key: str, limit: int, holders: Sequence[str], lease: float) -> int:
        """Under the key's row lock, in one transaction: count the slots, take what fits (dropping
        the expired ones first when the limit may bind).

        Reads the number of slots held and which of ``holders`` hold one
        already, not every holder's row, and inserts the new rows in one
        statement, so that the batch of a limit that does not bind costs a
        few statements whatever the number of jobs running.
        """
        slots = flow_table(self.tables, "slots")

        def acquire(conn: sa.Connection) -> int:
            if self.backend != "sqlite":  # SQLite's transaction holds the database's write lock
                self._lock_key(conn, f"s:{key}")
            now = time.time()
            named = self._among(slots.c.holder, holders)
            counted = sa.select(sa.func.count(), sa.func.sum(sa.case((named, 1), else_=0)))
            count, renewing = conn.execute(counted.where(slots.c.key == key)).one()
            count = int(count or 0)
            # Slots whose lease ended do not count: they are dropped when the limit may bind
            # (until then, counted, they only made the room look smaller).
            expired = sa.delete(slots).where(slots.c.key == key, slots.c.until <= now)
            if count + len(holders) > limit and conn.execute(expired).rowcount:
                count, renewing = conn.execute(counted.where(slots.c.key == key)).one()
                count = int(count or 0)
            held: set[str] = set()
            if renewing:  # some of the holders hold a slot already (rare): which
                mine = sa.select(slots.c.holder).where(slots.c.key == key, named)
                held = set(conn.execute(mine).scalars())
            renewed: list[str] = []
            taken: list[str] = []
            for holder in holders:
                if holder in held:
                    renewed.append(holder)
                elif count < limit:
                    count += 1
                    taken.append(holder)
                else:
                    break
            if renewed:
                stmt = sa.update(slots).where(slots.c.key == key, slots.c.holder.in_(renewed))
                conn.execute(stmt.values(until=now + lease))
            if taken:
                self._insert_slots(conn, key, taken, now + lease)
            return len(renewed) + len(taken)

        self._ensure_key(f"s:{key}")
        return self._run("taking concurrency slots", acquire)

    def _among(self, column: sa.ColumnElement[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
        """``column`` is one of ``values``, as one parameter whatever their number where the
        database can (an array on PostgreSQL, a JSON text on SQLite): the statement is compiled
        once, not once per number of values.
        """
        if self.backend == "postgresql":
            listed = sa.bindparam("among", list(values), type_=postgresql.ARRAY(sa.String), unique=True)
            return column == sa.func.any(listed)
        if self.backend == "sqlite":
            return column.in_(_json_values(list(values)))
        return column.in_(list(values))

    def _insert_slots(self, conn: sa.Connection, key: str, holders: list[str], until: float) -> None:
        """Insert the slot rows of ``holders`` in one statement (from an array, or a JSON text)."""
        slots = flow_table(self.tables, "slots")
        if self.backend in ("postgresql", "sqlite"):
            if self.backend == "postgresql":
                listed = sa.bindparam("holders", holders, type_=postgresql.ARRAY(sa.String))
                source = sa.select(sa.literal(key, sa.String), sa.func.unnest(listed))
            else:
                source = sa.select(sa.literal(key, sa.String), sa.literal_column("value")).select_from(
                    sa.func.json_each(sa.bindparam("holders", json.dumps(holders)))
                )
            rows = source.add_columns(sa.literal(until, slots.c.until.type))
            conn.execute(sa.insert(slots).from_select(["key", "holder", "until"], rows))
            return
        conn.execute(sa.insert(slots), [{"key": key, "holder": h, "until": until} for h in holders])

    def extend_slot(self, key: str, holder: str, lease: float) -> bool:
        """Move the slot's ``until`` on, if it has not passed."""
        slots = flow_table(self.tables, "slots")

        def extend(conn: sa.Connection) -> bool:
            now = time.time()
            stmt = sa.update(slots).where(slots.c.key == key, slots.c.holder == holder, slots.c.until > now)
            return bool(conn.execute(stmt.values(until=now + lease)).rowcount)

        return self._run("extending a concurrency slot", extend, autocommit=True)

    def release_slot(self, key: str, holder: str) -> None:
        """Delete the slot's row: one statement, on PostgreSQL committed without waiting for the disk
        (a release lost in a server crash leaves the slot to its lease, as a crashed worker's).
        """
        slots = flow_table(self.tables, "slots")
        stmt = sa.delete(slots).where(slots.c.key == key, slots.c.holder == holder)
        self._run(
            "freeing a concurrency slot", lambda conn: conn.execute(stmt), autocommit=True, relaxed=True
        )

    def release_slots(self, slots: Sequence[tuple[str, str]]) -> None:
        """Delete the slots' rows in one statement, committed as :meth:`release_slot`'s."""
        if not slots:
            return
        stmt = self._slots_delete(slots)
        self._run("freeing concurrency slots", lambda conn: conn.execute(stmt), autocommit=True, relaxed=True)

    def _slots_delete(self, slots: Sequence[tuple[str, str]]) -> sa.Delete:
        """One ``DELETE`` of the rows of ``slots`` (``(key, holder)`` pairs)."""
        table = flow_table(self.tables, "slots")
        by_key: dict[str, list[str]] = {}
        for key, holder in slots:
            by_key.setdefault(key, []).append(holder)
        return sa.delete(table).where(
            sa.or_(
                *(
                    sa.and_(table.c.key == key, self._among(table.c.holder, held))
                    for key, held in by_key.items()
                )
            )
        )
