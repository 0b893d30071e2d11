"""Crash safety of the database driver with real ``jobs worker`` processes.

Two workers drain 2,000 jobs that each record their id; one worker is killed
with SIGKILL midway. Every id must be recorded, and the ids run twice must be
no more than the killed worker could hold: at concurrency 1 its running job
plus prefetch; at concurrency 4 (5 ms jobs, default prefetch) its running jobs
plus those finished within the acknowledgement interval (50 ms).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

TOTAL = 2000
PREFETCH = 20
#: The worker's default acknowledgement interval (``Worker(ack_interval=...)``).
ACK_INTERVAL = 0.05
#: Seconds each job takes, by worker concurrency.
JOB_SECONDS = {1: 0.002, 4: 0.005}
POSTGRESQL_URL = os.environ.get(
    "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from jobs_core import job

    OUT = os.open(os.environ["CRASH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


    @job(name="crash.record", queue="crash")
    def record(payload):
        time.sleep(float(os.environ.get("CRASH_JOB_SECONDS", "0.002")))
        os.write(OUT, f"{os.getpid()} {payload['n']}\\n".encode())
    """
)


def _jobs_command() -> list[str]:
    exe = shutil.which("jobs")
    return [exe] if exe else [sys.executable, "-m", "jobs_core"]


def _server_ready(url: str) -> None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        message = f"PostgreSQL unreachable at {url}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        pid, ident = line.split()
        out.append((int(pid), ident))
    return out


def _crash_drain(url: str, tmp_path: Path, concurrency: int = 1) -> None:
    (tmp_path / "crashjobs.py").write_text(JOBS_MODULE)
    out = tmp_path / "recorded.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "CRASH_OUT": str(out),
        "CRASH_JOB_SECONDS": str(JOB_SECONDS[concurrency]),
    }
    dispatch = textwrap.dedent(
        f"""
        from jobs_core.app import JobsApp
        import crashjobs
        app = JobsApp({url!r})
        app.dispatch_many(crashjobs.record, [{{"n": i}} for i in range({TOTAL})])
        app.close()
        """
    )
    subprocess.run([sys.executable, "-c", dispatch], env=env, check=True, timeout=120, cwd=tmp_path)

    command = [
        *_jobs_command(),
        "worker",
        "--url",
        url,
        "--queue",
        "crash",
        "--import",
        "crashjobs",
        *(["--prefetch", str(PREFETCH)] if concurrency == 1 else ["--concurrency", str(concurrency)]),
        "--lease",
        "3",
        "--progress",
        "0",
    ]
    workers = [
        subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    victim, survivor = workers
    try:
        deadline = time.monotonic() + 120
        while len(_lines(out)) < TOTAL // 4:
            assert time.monotonic() < deadline, "the workers made no progress"
            assert victim.poll() is None and survivor.poll() is None, "a worker exited early"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        before_kill = {ident for pid, ident in _lines(out) if pid == victim.pid}
        assert before_kill, "the killed worker had run no job; the test proves nothing"

        deadline = time.monotonic() + 180
        while len({ident for _, ident in _lines(out)}) < TOTAL:
            assert time.monotonic() < deadline, "jobs were lost after the crash"
            assert survivor.poll() is None, "the surviving worker died"
            time.sleep(0.05)
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    lines = _lines(out)
    ids = [ident for _, ident in lines]
    assert set(ids) == {str(i) for i in range(TOTAL)}
    counts = Counter(ids)
    duplicates = len(ids) - len(counts)
    # Only the killed worker's unacknowledged jobs run again. With
    # concurrency 1 it holds one reserved batch of at most PREFETCH jobs
    # (finished ones are acked before the next batch is reserved). With more,
    # its running jobs and those finished within the ack interval (plus one
    # tick of slack for an acknowledgement in flight): prefetched jobs it
    # never started do not run twice.
    if concurrency == 1:
        bound = PREFETCH
    else:
        window = ACK_INTERVAL + 0.025
        bound = concurrency + math.ceil(concurrency * window / JOB_SECONDS[concurrency])
    print(f"{duplicates} duplicates (bound {bound}); the killed worker ran {len(before_kill)} jobs")
    assert duplicates <= bound, f"{duplicates} duplicates, more than {bound}"
    victim_ids = {ident for pid, ident in lines if pid == victim.pid}
    assert {i for i, n in counts.items() if n > 1} <= victim_ids, "a job the victim never ran ran twice"
    assert max(counts.values()) <= 2


def test_two_workers_on_postgresql_lose_nothing_when_one_is_killed(tmp_path: Path) -> None:
    _server_ready(POSTGRESQL_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    url = f"{POSTGRESQL_URL}?table_prefix={prefix}"
    try:
        _crash_drain(url, tmp_path)
    finally:
        from jobs_database.schema import build_tables, drop_all

        engine = sa.create_engine(POSTGRESQL_URL)
        drop_all(engine, build_tables(prefix))
        engine.dispose()


def test_two_workers_on_one_sqlite_file_lose_nothing_when_one_is_killed(tmp_path: Path) -> None:
    _crash_drain(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path)


def test_a_killed_busy_worker_at_concurrency_4_reruns_only_its_running_jobs_and_50ms_of_work_postgresql(
    tmp_path: Path,
) -> None:
    _server_ready(POSTGRESQL_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    url = f"{POSTGRESQL_URL}?table_prefix={prefix}"
    try:
        _crash_drain(url, tmp_path, concurrency=4)
    finally:
        from jobs_database.schema import build_tables, drop_all

        engine = sa.create_engine(POSTGRESQL_URL)
        drop_all(engine, build_tables(prefix))
        engine.dispose()


def test_a_killed_busy_worker_at_concurrency_4_reruns_only_its_running_jobs_and_50ms_of_work_sqlite(
    tmp_path: Path,
) -> None:
    _crash_drain(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path, concurrency=4)
