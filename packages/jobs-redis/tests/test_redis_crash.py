"""Crash safety with real ``jobs worker`` processes on Redis.

Two workers (concurrency 4, 5 ms jobs) drain 5,000 jobs that each record
their id; one is killed with SIGKILL midway. Every id must be recorded, and
the ids run twice must be no more than the killed worker's running jobs plus
those it finished within the acknowledgement interval (50 ms, plus one tick
for an acknowledgement in flight): its leases run out and the survivor takes
them over.
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
from collections import Counter
from pathlib import Path

from jobs_redis.testing import delete_prefix

TOTAL = 5000
CONCURRENCY = 4
JOB_SECONDS = 0.005
#: The worker's default acknowledgement interval.
ACK_INTERVAL = 0.05

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from jobs_core import job

    OUT = os.open(os.environ["CRASH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


    @job(name="crash.record", queue="crash")
    def record(payload):
        time.sleep(float(os.environ["CRASH_JOB_SECONDS"]))
        os.write(OUT, f"{os.getpid()} {payload['n']}\\n".encode())
    """
)


def _jobs_command() -> list[str]:
    exe = shutil.which("jobs")
    return [exe] if exe else [sys.executable, "-m", "jobs_core"]


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        pid, ident = line.split()
        out.append((int(pid), ident))
    return out


def test_a_killed_worker_loses_nothing_and_reruns_only_its_running_jobs(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    url = f"{redis_url}?prefix={prefix}"
    try:
        _crash_drain(url, tmp_path)
    finally:
        delete_prefix(url)


def _crash_drain(url: str, tmp_path: Path) -> None:
    (tmp_path / "crashjobs.py").write_text(JOBS_MODULE)
    out = tmp_path / "recorded.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "CRASH_OUT": str(out),
        "CRASH_JOB_SECONDS": str(JOB_SECONDS),
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
        "--concurrency",
        str(CONCURRENCY),
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
        # Both workers busy (on a loaded machine one may start long after the other), a quarter done.
        while len(_lines(out)) < TOTAL // 4 or not any(pid == victim.pid for pid, _ in _lines(out)):
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
    window = ACK_INTERVAL + 0.025
    bound = CONCURRENCY + math.ceil(CONCURRENCY * window / JOB_SECONDS)
    print(f"{duplicates} duplicates (bound {bound}); the killed worker ran {len(before_kill)} jobs")
    assert duplicates <= bound, f"{duplicates} duplicates, more than {bound}"
    victim_ids = {ident for pid, ident in lines if pid == victim.pid}
    assert {i for i, n in counts.items() if n > 1} <= victim_ids, "a job the victim never ran ran twice"
    assert max(counts.values()) <= 2
