"""First contact: ``jobs worker --stop-when-empty`` with the plain URL of the docs.

The URL carries no client settings (none of the fast test settings that
shorten the consumer-group join), so the worker joins its group with the
driver's defaults. It must run every job queued before it started, however
long the join takes, and exit 0; a second worker started afterwards on the
same group must do the same (the first one left a group that still forms).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from jobs_core.message import Message
from jobs_kafka import KafkaDriver

JOBS_MODULE = textwrap.dedent(
    """
    import os

    from jobs_core import job

    OUT = os.open(os.environ["FIRST_CONTACT_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


    @job(name="first_contact.record", queue="records")
    def record(payload):
        os.write(OUT, f"{payload['n']}\\n".encode())
    """
)


def _queue_jobs(url: str, names: list[str]) -> None:
    driver = KafkaDriver(url)
    try:
        messages = [Message(name="first_contact.record", payload={"n": n}, queue="records") for n in names]
        driver.enqueue(messages)
    finally:
        driver.close()


def _drain(url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "first_contact_jobs.py").write_text(JOBS_MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "FIRST_CONTACT_OUT": str(tmp_path / "ran.txt"),
    }
    env.pop("JOBS_URL", None)
    command = [sys.executable, "-m", "jobs_core", "worker", "--url", url, "--queue", "records"]
    command += ["--import", "first_contact_jobs", "--stop-when-empty", "--progress", "0"]
    started = time.monotonic()
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    return done, time.monotonic() - started


def _ran(tmp_path: Path) -> list[str]:
    path = tmp_path / "ran.txt"
    return path.read_text().split() if path.exists() else []


def test_a_stop_when_empty_worker_with_the_documented_url_runs_every_queued_job(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The URL of docs/drivers/kafka.md, on fresh names: no session or heartbeat settings.
    url = f"kafka://{kafka_bootstrap}?group_id=g{uuid.uuid4().hex[:10]}&topic_prefix=f{uuid.uuid4().hex[:8]}-"
    url += "&partitions=3"
    first = [f"a{n}" for n in range(300)]
    _queue_jobs(url, first)

    done, took = _drain(url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(_ran(tmp_path)) == sorted(first), done.stderr
    assert "processed 300," in done.stderr
    print(f"first worker: ran 300 jobs and stopped after {took:.1f} s (group join with the defaults)")

    second = [f"b{n}" for n in range(100)]
    _queue_jobs(url, second)
    done, took = _drain(url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(_ran(tmp_path)) == sorted(first + second), done.stderr
    assert "processed 100," in done.stderr
    print(f"second worker: ran 100 jobs and stopped after {took:.1f} s")
