"""PostgreSQL plans of the hot statements stay index-driven, whatever the statistics say.

A queue that appeared since the last ANALYZE (or a fresh table) has no
statistics; the planner then guesses that few rows match and may pick a
bitmap scan and a sort of the whole queue for every claim, or a hash join over
it for every ack, which makes draining a backlog quadratic.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_database import DatabaseDriver


@pytest.fixture
def loaded(postgresql_driver: DatabaseDriver) -> tuple[DatabaseDriver, str]:
    queue = f"plans-{uuid.uuid4().hex[:6]}"
    for _ in range(4):
        postgresql_driver.enqueue([Message(name="n", queue=queue, payload=i) for i in range(5000)])
    return postgresql_driver, queue


def _plan(conn: sa.Connection, statement: sa.TextClause, params: dict[str, object]) -> str:
    sql = statement.compile(dialect=conn.dialect)
    rows = conn.exec_driver_sql("EXPLAIN " + str(sql), sql.construct_params(params)).all()
    return "\n".join(str(row[0]) for row in rows)


def test_a_claim_walks_the_claim_index_even_without_statistics(loaded: tuple[DatabaseDriver, str]) -> None:
    driver, queue = loaded
    now = time.time()
    params = {"queue": queue, "now": now, "until": now + 30, "token": "t:", "limit": 100}
    with driver.engine.connect() as conn:
        plan = _plan(conn, driver._claimer._claim, params)
    assert f"Index Scan using {driver.tables.prefix}jobs_claim" in plan, plan
    assert "Bitmap" not in plan and "Sort" not in plan, plan


def test_an_ack_deletes_by_address(loaded: tuple[DatabaseDriver, str]) -> None:
    driver, queue = loaded
    held = driver.reserve([queue], limit=100, lease=30)
    params = {
        "ctids": "{" + ",".join(f'"{d.handle[4]}"' for d in held) + "}",
        "receipts": "{" + ",".join(d.receipt for d in held) + "}",
        "queue": queue,
        "now": time.time(),
    }
    with driver.engine.connect() as conn:
        plan = _plan(conn, driver._acker._ack, params)
    assert "Tid Scan" in plan, plan
    assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    driver.ack_many(held)
    stats = driver.stats(queue)
    assert (stats.pending, stats.reserved, stats.completed) == (20000 - 100, 0, 100)


def test_an_ack_racing_a_lease_extension_still_finishes_the_job(loaded: tuple[DatabaseDriver, str]) -> None:
    """An extension committed while the ack runs moves the row; the ack must follow it."""
    driver, queue = loaded
    (held,) = driver.reserve([queue], limit=1, lease=30)
    seq, _, priority, visible_at, _ = held.handle
    jobs = driver.tables.jobs
    extend = (
        sa.update(jobs)
        .where(jobs.c.queue == queue, jobs.c.priority == priority)
        .where(jobs.c.visible_at == visible_at, jobs.c.seq == seq)
        .values(lease_until=time.time() + 60)
    )
    with driver.engine.connect() as other:
        other.execute(extend)  # holds the row lock until the commit below
        acking = threading.Thread(target=driver.ack_many, args=([held],))
        acking.start()
        time.sleep(0.3)  # the ack is waiting for the row
        other.commit()
    acking.join(timeout=10)
    assert not acking.is_alive()
    stats = driver.stats(queue)
    assert (stats.reserved, stats.completed) == (0, 1)
