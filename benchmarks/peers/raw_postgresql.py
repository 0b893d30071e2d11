"""The limit on PostgreSQL: a bare psycopg loop over one table, no library.

Enqueue: ``COPY`` (bulk) or an ``INSERT`` and a ``NOTIFY`` (one job). The
worker deletes up to 100 rows per statement with ``FOR UPDATE SKIP LOCKED``
(a job is gone once claimed: at-most-once, which no job library accepts),
runs them, and waits on ``LISTEN`` when the table is empty. At concurrency 4
the rows of a batch go to a pool of 4 threads.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
from record import record

DSN = os.environ.get("BENCH_PEERS_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 5000
ENQUEUE = "`COPY` of 5,000 rows a call"
WORKER = (
    "one loop: `DELETE … SKIP LOCKED LIMIT 100 RETURNING`, `LISTEN` when empty; at 4: a pool of 4 threads"
)

CLAIM = (
    "DELETE FROM raw_jobs WHERE id = ANY(ARRAY("
    "SELECT id FROM raw_jobs ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)) RETURNING t"
)

_conn: psycopg.Connection | None = None


def _c() -> psycopg.Connection:
    global _conn
    if _conn is None:
        _conn = psycopg.connect(DSN, autocommit=True)
    return _conn


def setup() -> None:
    _c().execute("CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, t double precision NOT NULL)")


def enqueue_many(count: int) -> None:
    conn = _c()
    with conn.transaction(), conn.cursor().copy("COPY raw_jobs (t) FROM STDIN") as copy:
        for _ in range(count):
            copy.write_row((0.0,))


def enqueue_one(t: float) -> None:
    conn = _c()
    with conn.transaction():
        conn.execute("INSERT INTO raw_jobs (t) VALUES (%s)", (t,))
        conn.execute("NOTIFY raw_jobs")


def work(concurrency: int | None) -> None:
    pool = ThreadPoolExecutor(concurrency) if concurrency else None
    claim = psycopg.connect(DSN, autocommit=True)
    listen = psycopg.connect(DSN, autocommit=True)
    listen.execute("LISTEN raw_jobs")
    while True:
        rows = [t for (t,) in claim.execute(CLAIM).fetchall()]
        if rows:
            if pool is None:
                for t in rows:
                    record(t)
            else:
                list(pool.map(record, rows))
            continue
        for _ in listen.notifies(timeout=1.0, stop_after=1):
            pass


def worker_argv(concurrency: int | None) -> list[str]:
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
    return [sys.executable, client, "raw_postgresql", "work", str(concurrency or "default")]
