"""pgqueuer on PostgreSQL (asyncpg, as its quick start): ``pgq run peer_pgqueuer:main``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from record import record

DSN = os.environ.get("BENCH_PEERS_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 5000
ENQUEUE = "`Queries.enqueue` with lists (one batch insert), 5,000 jobs a call"
WORKER = (
    "`pgq run peer_pgqueuer:main` (default: no concurrency limit, batch size 10); "
    "`--max-concurrent-tasks 4 --batch-size 2` (it requires a limit of at least twice the batch size)"
)


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory ``pgq run`` takes (since 1.6 an async context manager)."""
    connection = await asyncpg.connect(DSN)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        record(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await connection.close()


def setup() -> None:
    parts = urlsplit(DSN)
    env = {
        **os.environ,
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": parts.username or "",
        "PGDATABASE": parts.path.lstrip("/"),
    }
    subprocess.run([_pgq(), "install"], env=env, check=True, capture_output=True)


def _pgq() -> str:
    return str(Path(sys.executable).with_name("pgq"))


_loop = asyncio.new_event_loop()
_queries: Queries | None = None


def _q() -> Queries:
    global _queries
    if _queries is None:
        _queries = Queries(AsyncpgDriver(_loop.run_until_complete(asyncpg.connect(DSN))))
    return _queries


def enqueue_many(count: int) -> None:
    _loop.run_until_complete(_q().enqueue(["noop"] * count, [b"0"] * count, [0] * count))


def enqueue_one(t: float) -> None:
    _loop.run_until_complete(_q().enqueue("noop", repr(t).encode()))


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [_pgq(), "run", "peer_pgqueuer:main"]
    if not concurrency:
        return argv
    # pgq refuses a limit below twice the batch size (10 by default)
    return [*argv, "--max-concurrent-tasks", str(concurrency), "--batch-size", str(max(1, concurrency // 2))]
