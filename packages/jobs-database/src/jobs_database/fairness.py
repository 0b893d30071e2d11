"""Tenant fairness of the database driver: claiming a queue's tenants in turns.

A job dispatched with ``Job.tenant(key)`` is stored with its tenant in the
jobs table's ``tenant`` column, and its queue and tenant get a row in the
``tenants`` table (with the empty tenant ``""`` standing for the queue's
jobs without one). A claim on a queue that has tenants reads the queue's
*sources* (on SQLite only those that have a job due), least recently
served first, and takes an equal share of the batch from each in turn (a
tenant's own jobs in priority and due order, through the tenant claim
index); the shares of sources with fewer jobs due go to the others, in
further turns. When it read two sources or more it marks those it took its
turn from as served now (one alone has no turn to keep), and it fills what
is left (jobs of a tenant without a ``tenants`` row) with the queue's
ordinary claim. One tenant's backlog therefore delays another tenant's jobs
by at most one share of a batch per source ahead of it, on any number of
workers.

Jobs without a tenant in a queue with tenants are stored with the tenant
``""``, so that every source is found through the tenant claim index (the
jobs stored before the queue's first tenant take it then). A queue whose
jobs never carried a tenant is stored and claimed as before, the claim one
statement: each driver rereads which queues have tenants every
:data:`TENANT_REFRESH` seconds (and knows at once of those it enqueued to),
so jobs without a tenant pay one small query per refresh, not per job or
claim. A job without its source's ``tenants`` row, or stored with no
tenant by a producer that had not yet seen the queue's first tenant, is
still claimed, by the fill: never stuck, only served without its turn.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import sqlalchemy as sa
from jobs_core.flow_state import TENANT_HEADER
from jobs_core.message import Message, MessageBatch

from jobs_database.claims import Claimer, Row
from jobs_database.flow import FlowOperations
from jobs_database.schema import MAX_TENANT, WAITING, Tables, flow_table

#: Seconds between two reads, by a driver, of the queues that have tenants.
TENANT_REFRESH = 0.5
#: Sources read by a claim beyond one per job wanted: those with nothing due give their turn on.
SPARE_SOURCES = 8
#: The ``tenants`` row of a queue's jobs without a tenant.
NO_TENANT = ""


def tenant_of(message: Message) -> str | None:
    """The tenant stored for ``message``: its ``jobs-tenant`` header, if it is a usable key.

    A header that is empty or longer than the column (written by other means:
    ``Job.tenant`` refuses both at dispatch) is stored as no tenant.
    """
    if not message.headers:
        return None
    tenant = message.headers.get(TENANT_HEADER)
    if tenant is None or not 1 <= len(tenant) <= MAX_TENANT:
        return None
    return tenant


def carries_tenant(messages: Sequence[Message]) -> bool:
    """Whether any of ``messages`` has a tenant (a bulk batch: whether its shared headers name one)."""
    if isinstance(messages, MessageBatch):
        headers = messages.common.get("headers") or {}
        return TENANT_HEADER in headers
    return any(m.headers and TENANT_HEADER in m.headers for m in messages)


class TenantClaims:
    """The turns of the tenants of one driver's queues."""

    def __init__(self, backend: str, tables: Tables, claimer: Claimer) -> None:
        self.backend = backend
        self.claimer = claimer
        self._table = flow_table(tables, "tenants")
        self._jobs = tables.jobs
        self._known: frozenset[str] = frozenset()
        self._read = -math.inf
        self._lock = threading.Lock()
        t, j = self._table, tables.jobs
        now: sa.BindParameter[float] = sa.bindparam("now")
        sources = sa.select(t.c.tenant).where(t.c.queue == sa.bindparam("queue"))
        if backend == "sqlite":
            # Only the sources with a job due (one probe of the tenant claim index each): on
            # SQLite a statement costs more than the probe, and a source with nothing due
            # would cost its claim statement for nothing. On a server the probe walks the
            # index entries of the jobs leased but not yet acknowledged, as the claim does:
            # it would cost about one more claim.
            due = (
                sa.exists()
                .where(j.c.queue == t.c.queue, j.c.tenant == t.c.tenant, j.c.visible_at <= now)
                .where(sa.or_(j.c.state == WAITING, j.c.lease_until < now))
            )
            sources = sources.where(due)
        self._sources = sources.order_by(t.c.served_at, t.c.tenant).limit(sa.bindparam("limit"))
        self._served = (
            sa.update(t)
            .where(t.c.queue == sa.bindparam("b_queue"))
            .where(t.c.tenant.in_(sa.bindparam("b_tenants", expanding=True)))
            .values(served_at=sa.bindparam("b_now"))
        )

    # -- which queues have tenants ----------------------------------------------------

    def queues(self, read: Callable[[Callable[[sa.Connection], list[str]]], list[str]]) -> frozenset[str]:
        """The queues that have tenants, reread through ``read`` if the last read is stale."""
        now = time.monotonic()
        if now - self._read < TENANT_REFRESH:
            return self._known
        t = self._table
        stmt = sa.select(t.c.queue).distinct()
        found = read(lambda conn: [str(q) for q in conn.execute(stmt).scalars()])
        with self._lock:
            self._read = now
            self._known = self._known | frozenset(found)
        return self._known

    def mark(self, queues: Iterable[str]) -> None:
        """Queues this driver just stored jobs of tenants on (seen without waiting for a reread)."""
        with self._lock:
            self._known = self._known | frozenset(queues)

    def involved(self, messages: Sequence[Message]) -> bool:
        """Whether storing ``messages`` involves tenants: one has one, or goes to a queue with tenants."""
        if carries_tenant(messages):
            return True
        known = self._known
        if not known:
            return False
        if isinstance(messages, MessageBatch):
            return messages.common.get("queue") in known
        return any(m.queue in known for m in messages)

    def stored_tenant(self, message: Message) -> str | None:
        """The ``tenant`` column of ``message``: its tenant; ``""`` in a queue with tenants; else NULL."""
        tenant = tenant_of(message)
        if tenant is None and message.queue in self._known:
            return NO_TENANT
        return tenant

    # -- enqueue ------------------------------------------------------------------------

    def record(self, conn: sa.Connection, pairs: set[tuple[str, str]], ops: FlowOperations) -> None:
        """Give each ``(queue, tenant)`` of ``pairs`` its ``tenants`` row, if missing (first in line).

        The queue's row for its jobs without a tenant is added with the first;
        when it is, the jobs stored without a tenant in the queue until then
        take the tenant ``""`` (once per queue: a scan of its rows), so that
        they have their turn too.
        """
        queues = {queue for queue, _ in pairs}
        jobs = self._jobs
        for queue, tenant in sorted(pairs | {(q, NO_TENANT) for q in queues}):
            row = {"queue": queue, "tenant": tenant, "served_at": 0.0}
            if ops._inserted(conn, ops._insert_missing(self._table, row)) and tenant == NO_TENANT:
                stmt = sa.update(jobs).where(jobs.c.queue == queue, jobs.c.tenant.is_(None))
                conn.execute(stmt.values(tenant=NO_TENANT))

    # -- claim --------------------------------------------------------------------------

    def claim(
        self, conn: sa.Connection, queue: str, *, limit: int, now: float, until: float, token: str
    ) -> list[Row]:
        """Lease up to ``limit`` rows of ``queue``, an equal share from each source in turn.

        Sources are taken from least recently served first, in turns, until
        the batch is full or none has more due; each source whose turn came
        is marked served. What is left is filled by the ordinary claim.
        """
        params = {"queue": queue, "limit": limit + SPARE_SOURCES, "now": now}
        sources = [str(s) for s in conn.execute(self._sources, params).scalars()]
        rows: list[Row] = []
        served: list[str] = []
        active = sources
        while active and len(rows) < limit:
            more: list[str] = []
            for index, source in enumerate(active):
                # An equal share of what is left among the sources still to come in this turn:
                # what one with fewer jobs due leaves goes to those after it.
                room = -(-(limit - len(rows)) // (len(active) - index))
                if room <= 0:
                    break
                if source not in served:
                    served.append(source)
                got = self.claimer.claim_source(
                    conn, queue, source, limit=room, now=now, until=until, token=token
                )
                rows.extend(got)
                if len(got) == room:
                    more.append(source)  # it may have more: another turn if there is room
            active = more
        if len(rows) < limit:
            rows.extend(
                self.claimer.claim(conn, queue, limit=limit - len(rows), now=now, until=until, token=token)
            )
        if len(sources) > 1 and served:
            # The turn order matters only among two sources or more: a claim that read one
            # (on SQLite: the one tenant with jobs due) leaves the order as it was.
            conn.execute(self._served, {"b_queue": queue, "b_tenants": served, "b_now": now})
        return rows
