"""Workflows with real ``jobs worker`` processes, one of them killed with SIGKILL.

- A batch of 2,000 jobs drained by two workers, one killed midway: ``then``
  and ``finally`` run exactly once, and the batch's counts are exact.
- A 50-link chain, a worker killed in the middle: every link runs; a link
  runs twice only if the killed worker was running it, and each link's
  successor is enqueued once (no link runs three times, the chain's counts
  are exact).
- A chain whose third link fails stops there; ``jobs retry ID`` of that link
  finishes it.

On PostgreSQL, on one SQLite file and on Redis (a prefix of its own).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from jobs_core import JobsApp, job
from jobs_core.workflows import Batch, Chain, status

POSTGRESQL_URL = os.environ.get(
    "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BATCH_SIZE = 2000
CHAIN_LENGTH = 50
PREFETCH = 20
LEASE = "3"

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from jobs_core import job
    from jobs_core.workflows import previous_result

    OUT = os.open(os.environ["WF_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


    def note(text):
        os.write(OUT, f"{os.getpid()} {text}\\n".encode())


    @job(name="wf.member", queue="wf")
    def member(payload):
        time.sleep(0.002)
        note(f"member {payload['n']}")


    @job(name="wf.callback", queue="wf")
    def callback(payload):
        note(f"callback {payload['kind']} {payload['batch_id']}")


    @job(name="wf.link", queue="wf")
    def link(payload):
        time.sleep(0.01)
        previous = previous_result()
        if payload["i"] > 0 and previous != payload["i"] - 1:
            raise RuntimeError(f"link {payload['i']} got {previous!r} from the previous link")
        note(f"link {payload['i']}")
        return payload["i"]


    @job(name="wf.flaky", queue="wf", max_retries=0)
    def flaky(payload):
        if os.path.exists(os.environ["WF_FAIL"]):
            raise RuntimeError("flaky link fails while the mark file exists")
        note(f"link {payload['i']}")
        return payload["i"]
    """
)


def _nothing(payload: object) -> None:
    return None


#: The jobs of JOBS_MODULE as this process dispatches them: the same names and
#: settings (what the messages carry); the workers run the module's.
STUBS = {
    "member": job(name="wf.member", queue="wf")(_nothing),
    "callback": job(name="wf.callback", queue="wf")(_nothing),
    "link": job(name="wf.link", queue="wf")(_nothing),
    "flaky": job(name="wf.flaky", queue="wf", max_retries=0)(_nothing),
}


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


REDIS_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_url() -> Iterator[str]:
    pytest.importorskip("jobs_redis")
    from jobs_redis.testing import delete_prefix, require_server

    require_server(REDIS_URL)
    url = f"{REDIS_URL}?prefix=w{uuid.uuid4().hex[:10]}"
    yield url
    delete_prefix(url)


@pytest.fixture(params=["postgresql", "sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    if request.param == "redis":
        yield from _redis_url()
        return
    _server_ready(POSTGRESQL_URL)
    prefix = f"w{uuid.uuid4().hex[:10]}_"
    yield f"{POSTGRESQL_URL}?table_prefix={prefix}"
    from jobs_database.schema import build_tables, drop_all

    engine = sa.create_engine(POSTGRESQL_URL)
    drop_all(engine, build_tables(prefix))
    engine.dispose()


class Run:
    """The files and environment of one test: the jobs module, its output file."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        (tmp_path / "wfjobs.py").write_text(JOBS_MODULE)
        self.out = tmp_path / "out.txt"
        self.fail_mark = tmp_path / "fail-mark"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "WF_OUT": str(self.out),
            "WF_FAIL": str(self.fail_mark),
        }

    @contextlib.contextmanager
    def app(self) -> Iterator[JobsApp]:
        """An app on the test's backend, in this process (it dispatches; the workers run)."""
        app = JobsApp(self.url, load_plugins=False)
        try:
            yield app
        finally:
            app.close()

    def status(self, kind: str, workflow_id: str) -> dict[str, object]:
        with self.app() as app:
            return status(app, workflow_id, kind).to_dict()

    def worker(self, *extra: str) -> subprocess.Popen[str]:
        command = [
            *_jobs_command(),
            "worker",
            "--url",
            self.url,
            "--queue",
            "wf",
            "--import",
            "wfjobs",
            "--prefetch",
            str(PREFETCH),
            "--lease",
            LEASE,
            "--progress",
            "0",
            *extra,
        ]
        return subprocess.Popen(command, env=self.env, cwd=self.tmp_path, stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[tuple[int, str]]:
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text().splitlines():
            pid, _, text = line.partition(" ")
            found.append((int(pid), text))
        return found


def _wait(condition: object, what: str, timeout: float, workers: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for proc in workers:
            assert proc.poll() is None, f"a worker exited early: {proc.stderr.read() if proc.stderr else ''}"
        time.sleep(0.05)


def _stop(workers: list[subprocess.Popen[str]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_a_2000_job_batch_with_a_killed_worker_runs_then_and_finally_once(url: str, tmp_path: Path) -> None:
    run = Run(url, tmp_path)
    with run.app() as app:
        steps = [(STUBS["member"], {"n": n}) for n in range(BATCH_SIZE)]
        batch = Batch(app, steps).then(STUBS["callback"], {"kind": "then"})
        batch_id = batch.finally_(STUBS["callback"], {"kind": "finally"}).dispatch()
    workers = [run.worker(), run.worker()]
    victim, survivor = workers
    try:
        _wait(lambda: len(run.lines()) >= BATCH_SIZE // 4, "a quarter of the batch", 120, workers)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert any(pid == victim.pid for pid, _ in run.lines()), "the killed worker ran nothing"
        workers = [survivor]

        def finally_ran() -> bool:
            return any(text.startswith("callback finally") for _, text in run.lines())

        _wait(finally_ran, "the finally callback", 180, workers)
        time.sleep(1.0)  # room for a second callback, were one stored
    finally:
        _stop([victim, survivor])
    texts = [text for _, text in run.lines()]
    callbacks = Counter(t for t in texts if t.startswith("callback"))
    assert callbacks == {f"callback then {batch_id}": 1, f"callback finally {batch_id}": 1}
    members = {t for t in texts if t.startswith("member")}
    assert members == {f"member {n}" for n in range(BATCH_SIZE)}
    status = run.status("batch", batch_id)
    assert (status["total"], status["succeeded"], status["failed"], status["pending"]) == (
        BATCH_SIZE,
        BATCH_SIZE,
        0,
        0,
    )
    assert status["finished"] is True
    assert status["status"] == "succeeded"


def test_a_50_link_chain_with_a_killed_worker_completes_every_link_once(url: str, tmp_path: Path) -> None:
    run = Run(url, tmp_path)
    with run.app() as app:
        chain_id = Chain(app, [(STUBS["link"], {"i": i}) for i in range(CHAIN_LENGTH)]).dispatch()
    workers = [run.worker(), run.worker()]
    try:
        _wait(lambda: len(run.lines()) >= CHAIN_LENGTH // 3, "a third of the chain", 120, workers)
        # Kill whichever worker ran the latest link: it is the likeliest to hold the next one.
        latest_pid = run.lines()[-1][0]
        victim = next(p for p in workers if p.pid == latest_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        survivor = next(p for p in workers if p is not victim)
        _wait(
            lambda: f"link {CHAIN_LENGTH - 1}" in {t for _, t in run.lines()},
            "the last link",
            180,
            [survivor],
        )
        time.sleep(1.0)  # room for a link stored twice to run
    finally:
        _stop(workers)
    lines = run.lines()
    counts = Counter(text for _, text in lines)
    assert set(counts) == {f"link {i}" for i in range(CHAIN_LENGTH)}
    twice = [text for text, n in counts.items() if n > 1]
    assert len(twice) <= 1, f"links run twice: {twice}; only the one running when the worker died may"
    assert max(counts.values()) <= 2
    for text in twice:
        assert victim.pid in {pid for pid, t in lines if t == text}, (
            f"{text} ran twice, not by the killed worker"
        )
    status = run.status("chain", chain_id)
    assert (status["status"], status["succeeded"], status["pending"], status["position"]) == (
        "succeeded",
        CHAIN_LENGTH,
        0,
        CHAIN_LENGTH,
    )


def test_a_chain_stops_at_its_failed_third_link_and_jobs_retry_finishes_it(url: str, tmp_path: Path) -> None:
    run = Run(url, tmp_path)
    run.fail_mark.write_text("fail")
    link, flaky = STUBS["link"], STUBS["flaky"]
    steps = [(link, {"i": 0}), (link, {"i": 1}), (flaky, {"i": 2}), (link, {"i": 3}), (link, {"i": 4})]
    with run.app() as app:
        chain_id = Chain(app, steps).dispatch()
    first = run.worker("--stop-when-empty")
    assert first.wait(timeout=120) == 0
    assert [t for _, t in run.lines()] == ["link 0", "link 1"]
    status = run.status("chain", chain_id)
    assert (status["status"], status["position"], status["failed"], status["pending"]) == ("failed", 2, 1, 2)
    (failed_id,) = status["failed_ids"]  # type: ignore[misc]
    run.fail_mark.unlink()
    retried = subprocess.run(
        [*_jobs_command(), "retry", "--url", url, str(failed_id)],
        check=False,
        env=run.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert retried.returncode == 0, retried.stderr
    second = run.worker("--stop-when-empty")
    assert second.wait(timeout=120) == 0
    assert [t for _, t in run.lines()] == [f"link {i}" for i in range(5)]
    status = run.status("chain", chain_id)
    assert (status["status"], status["succeeded"], status["failed"], status["finished"]) == (
        "succeeded",
        5,
        0,
        True,
    )
