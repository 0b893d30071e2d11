"""The limit on SQLite: a bare sqlite3 loop over one table, no library.

WAL and ``synchronous=NORMAL``, as the project's SQLite driver sets. Enqueue:
``executemany`` in one transaction (bulk) or one ``INSERT`` (one job). The
worker deletes up to 100 rows per ``BEGIN IMMEDIATE`` transaction
(``DELETE … RETURNING``: gone once claimed, at-most-once), runs them, and
polls every millisecond when the table is empty. At concurrency 4 the rows
of a batch go to a pool of 4 threads.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from record import record

PATH = os.environ.get("BENCH_PEERS_URL", "raw.db")
CHUNK = 5000
ENQUEUE = "`executemany` of 5,000 rows in one transaction"
WORKER = (
    "one loop: `DELETE … LIMIT 100 RETURNING` per transaction, polling every 1 ms when empty; "
    "at 4: a pool of 4 threads"
)

CLAIM = "DELETE FROM raw_jobs WHERE id IN (SELECT id FROM raw_jobs ORDER BY id LIMIT 100) RETURNING t"

_conn: sqlite3.Connection | None = None


def _c() -> sqlite3.Connection:
    global _conn
    if _conn is None:
        _conn = sqlite3.connect(PATH, isolation_level=None, timeout=30)
        _conn.execute("PRAGMA journal_mode=WAL")
        _conn.execute("PRAGMA synchronous=NORMAL")
    return _conn


def setup() -> None:
    _c().execute("CREATE TABLE raw_jobs (id INTEGER PRIMARY KEY, t REAL NOT NULL)")


def enqueue_many(count: int) -> None:
    conn = _c()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO raw_jobs (t) VALUES (?)", [(0.0,)] * count)
    conn.execute("COMMIT")


def enqueue_one(t: float) -> None:
    _c().execute("INSERT INTO raw_jobs (t) VALUES (?)", (t,))


def work(concurrency: int | None) -> None:
    pool = ThreadPoolExecutor(concurrency) if concurrency else None
    conn = _c()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = [t for (t,) in conn.execute(CLAIM).fetchall()]
        conn.execute("COMMIT")
        if not rows:
            time.sleep(0.001)
        elif pool is None:
            for t in rows:
                record(t)
        else:
            list(pool.map(record, rows))


def worker_argv(concurrency: int | None) -> list[str]:
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py")
    return [sys.executable, client, "raw_sqlite", "work", str(concurrency or "default")]
