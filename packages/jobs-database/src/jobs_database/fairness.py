"""Tenant fairness of the database driver: claiming a queue's tenants in turns.

A job dispatched with ``Job.tenant(key)`` is stored with its tenant in the
jobs table's ``tenant`` column, and its queue and tenant get a row in the
``tenants`` table (with the empty tenant ``""`` standing for the queue's
jobs without one). A claim on a queue that has tenants reads the queue's
*sources* least recently served first (at most one per job wanted), takes
an equal share of the batch from each (a tenant's own jobs in priority and
due order, through the tenant claim index), fills what the shares left
with the queue's ordinary claim, and marks the sources it took from as
served now. One tenant's backlog therefore delays another tenant's jobs by
at most one claim per source ahead of it, on any number of workers.

A queue whose jobs never carried a tenant is claimed as before, with one
statement: each driver rereads which queues have tenants every
:data:`TENANT_REFRESH` seconds (and knows at once of those it enqueued to),
so a jobs without a tenant pay one small query per refresh, not per claim.
A job whose tenant has no ``tenants`` row is still claimed by the fill; it is
never stuck, only served without its turn.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from jobs_core.flow_state import TENANT_HEADER
from jobs_core.message import Message, MessageBatch

from jobs_database.claims import Claimer, Row
from jobs_database.schema import MAX_TENANT, Tables, flow_table

#: Seconds between two reads, by a driver, of the queues that have tenants.
TENANT_REFRESH = 0.5
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
        self._known: frozenset[str] = frozenset()
        self._read = -math.inf
        self._lock = threading.Lock()
        t = self._table
        self._sources = (
            sa.select(t.c.tenant)
            .where(t.c.queue == sa.bindparam("queue"))
            .order_by(t.c.served_at, t.c.tenant)
            .limit(sa.bindparam("limit"))
        )
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

    # -- enqueue ------------------------------------------------------------------------

    def record(self, conn: sa.Connection, pairs: set[tuple[str, str]], insert_missing: Any) -> None:
        """Give each ``(queue, tenant)`` of ``pairs`` its ``tenants`` row, if missing (first in line).

        The queue's row for its jobs without a tenant is added with the first.
        """
        queues = {queue for queue, _ in pairs}
        for queue, tenant in sorted(pairs | {(q, NO_TENANT) for q in queues}):
            conn.execute(insert_missing(self._table, {"queue": queue, "tenant": tenant, "served_at": 0.0}))

    # -- claim --------------------------------------------------------------------------

    def claim(
        self, conn: sa.Connection, queue: str, *, limit: int, now: float, until: float, token: str
    ) -> list[Row]:
        """Lease up to ``limit`` rows of ``queue``, an equal share from each source in turn."""
        sources = [str(s) for s in conn.execute(self._sources, {"queue": queue, "limit": limit}).scalars()]
        rows: list[Row] = []
        served: list[str] = []
        share = -(-limit // max(1, len(sources)))
        for source in sources:
            room = limit - len(rows)
            if room <= 0:
                break
            served.append(source)
            rows.extend(
                self.claimer.claim_source(
                    conn,
                    queue,
                    source or None,
                    limit=min(share, room),
                    now=now,
                    until=until,
                    token=token,
                )
            )
        if len(rows) < limit:
            rows.extend(
                self.claimer.claim(conn, queue, limit=limit - len(rows), now=now, until=until, token=token)
            )
        if served:
            conn.execute(self._served, {"b_queue": queue, "b_tenants": served, "b_now": now})
        return rows
