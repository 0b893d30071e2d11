"""procrastinate on PostgreSQL (psycopg 3): ``procrastinate --app=peer_procrastinate.app worker``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import procrastinate
from record import record

DSN = os.environ.get("BENCH_PEERS_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 5000
ENQUEUE = "`Task.batch_defer` (one multi-row insert), 5,000 jobs a call"
WORKER = "`procrastinate --app=peer_procrastinate.app worker -q bench` (default concurrency 1); `-c 4`"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name="noop", queue="bench")
async def noop(t: float) -> None:
    record(t)


def _cli() -> list[str]:
    return [str(Path(sys.executable).with_name("procrastinate")), "--app=peer_procrastinate.app"]


def setup() -> None:
    subprocess.run([*_cli(), "schema", "--apply"], check=True, capture_output=True)


_opened = False


def _open() -> None:
    global _opened
    if not _opened:
        app.open()
        _opened = True


def enqueue_many(count: int) -> None:
    _open()
    noop.batch_defer(*({"t": 0.0} for _ in range(count)))


def enqueue_one(t: float) -> None:
    _open()
    noop.defer(t=t)


def worker_argv(concurrency: int | None) -> list[str]:
    argv = [*_cli(), "worker", "-q", "bench"]
    return argv + (["-c", str(concurrency)] if concurrency else [])


def close() -> None:
    if _opened:
        app.close()
