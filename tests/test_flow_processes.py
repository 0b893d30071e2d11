"""Flow control across real ``jobs worker`` processes on PostgreSQL (the tenants on Redis too).

* A rate limit of 50 jobs/s on the key "api", four worker processes: in no
  one-second window do more than 50 jobs start (one start of slack at the
  window's edges, where two clocks read the same instant), and the jobs
  start at the limit's pace (how close to it is the benchmark's business).
* A concurrency limit of 1 with four workers of four threads: no two jobs
  of the key overlap (their recorded start and end times), and the slot of
  a holder killed with SIGKILL is free again once its lease ends.
* Pausing the queue three worker processes serve: no job starts on any of
  them more than a second after the pause; resuming starts them again.
* Tenant "a" queues 50,000 jobs, then tenant "b" 10: a worker process
  (concurrency 8) busy with "a"'s backlog starts all of "b"'s within a
  second of their dispatch.

Runs of a few seconds prove the properties; the lengths are set so that the
whole module takes well under a minute.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRESQL_URL = os.environ.get(
    "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RATE = 50
#: Jobs of the rate test: ten windows' worth.
RATE_JOBS = RATE * 10

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from jobs_core import job

    OUT = os.open(os.environ["FLOW_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


    @job(name="flow.api", queue="flow")
    def api(payload):
        os.write(OUT, f"start {time.time():.6f} {os.getpid()} {payload['n']}\\n".encode())


    @job(name="flow.exclusive", queue="flow")
    def exclusive(payload):
        began = time.time()
        os.write(OUT, f"begin {began:.6f} {os.getpid()} {payload['n']}\\n".encode())
        seconds = payload.get("seconds", 0.02)
        try:  # a long job is long on its first run only (its worker is killed in it)
            os.close(os.open(f"{os.environ['FLOW_OUT']}.{payload['n']}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            seconds = 0.02
        time.sleep(seconds)
        os.write(OUT, f"end {time.time():.6f} {os.getpid()} {payload['n']}\\n".encode())


    @job(name="flow.step", queue="flow")
    def step(payload):
        os.write(OUT, f"{payload['kind']} {time.time():.6f} {os.getpid()} {payload['n']}\\n".encode())
    """
)


def _jobs_command() -> list[str]:
    exe = shutil.which("jobs")
    return [exe] if exe else [sys.executable, "-m", "jobs_core"]


@pytest.fixture
def url() -> Iterator[str]:
    engine = sa.create_engine(POSTGRESQL_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        message = f"PostgreSQL unreachable at {POSTGRESQL_URL}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"f{uuid.uuid4().hex[:10]}_"
    yield f"{POSTGRESQL_URL}?table_prefix={prefix}"
    from jobs_database.schema import build_tables, drop_all

    drop_all(engine, build_tables(prefix))
    engine.dispose()


@pytest.fixture(params=["postgresql", "redis"])
def fair_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a backend with tenant fairness: this test's tables on PostgreSQL, or its Redis prefix."""
    if request.param == "postgresql":
        yield request.getfixturevalue("url")
        return
    testing = pytest.importorskip("jobs_redis.testing")
    testing.require_server(REDIS_URL)
    redis_url = f"{REDIS_URL}?prefix=f{uuid.uuid4().hex[:10]}"
    yield redis_url
    testing.delete_prefix(redis_url)


class Workers:
    """Worker processes running the jobs module, and what their jobs recorded."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        (tmp_path / "flowjobs.py").write_text(JOBS_MODULE)
        self.url = url
        self.out = tmp_path / "recorded.txt"
        self.cwd = tmp_path
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "FLOW_OUT": str(self.out),
        }
        self.processes: list[subprocess.Popen[str]] = []

    def dispatch(self, code: str) -> None:
        script = f"from jobs_core.app import JobsApp\nimport flowjobs\napp = JobsApp({self.url!r})\n{code}\n"
        subprocess.run([sys.executable, "-c", script], env=self.env, cwd=self.cwd, check=True, timeout=120)

    def start(self, count: int, *options: str) -> None:
        command = [*_jobs_command(), "worker", "--url", self.url, "--queue", "flow", "--import", "flowjobs"]
        command += [*options, "--progress", "0", "--log-level", "INFO"]
        for _ in range(count):
            self.processes.append(
                subprocess.Popen(command, env=self.env, cwd=self.cwd, stderr=self._log(), text=True)
            )

    def _log(self) -> int:
        return os.open(self.cwd / f"worker-{len(self.processes)}.log", os.O_WRONLY | os.O_CREAT, 0o644)

    def wait_serving(self, timeout: float = 90.0) -> None:
        """Wait until every worker has started (its first line on stderr)."""
        deadline = time.monotonic() + timeout
        logs = [self.cwd / f"worker-{i}.log" for i in range(len(self.processes))]
        while not all(log.exists() and "serving" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)

    def lines(self, kind: str) -> list[tuple[float, int, int]]:
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_text().splitlines():
            what, at, pid, n = line.split()
            if what == kind:
                rows.append((float(at), int(pid), int(n)))
        return rows

    def wait_for(self, kind: str, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines(kind)) < count:
            assert time.monotonic() < deadline, f"only {len(self.lines(kind))} of {count} {kind!r} lines"
            assert all(p.poll() is None for p in self.processes), "a worker exited"
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def test_four_workers_never_start_more_than_the_rate_limit_in_any_second(url: str, tmp_path: Path) -> None:
    workers = Workers(url, tmp_path)
    try:
        workers.start(4, "--concurrency", "4")
        workers.wait_serving()
        workers.dispatch(
            f"app.dispatch_many(flowjobs.api.rate_limit({RATE}, per=1, key='api'), "
            f"[{{'n': n}} for n in range({RATE_JOBS})])"
        )
        workers.wait_for("start", RATE_JOBS)
    finally:
        workers.stop()
    rows = workers.lines("start")
    assert sorted(n for _, _, n in rows) == list(range(RATE_JOBS)), "each job ran once"
    assert len({pid for _, pid, _ in rows}) > 1, "more than one process took part"
    times = sorted(at for at, _, _ in rows)
    busiest = max(sum(1 for t in times[i:] if t < at + 1.0) for i, at in enumerate(times))
    assert busiest <= RATE + 1, f"{busiest} jobs started within one second (limit {RATE})"
    # A window's worth starts at once, the next once the first grants leave the window:
    # the pace is how fast windows open, from the first start to the first of the last window.
    pace = (RATE_JOBS - RATE) / (times[RATE_JOBS - RATE] - times[0])
    print(f"busiest second {busiest}, pace {pace:.1f} jobs/s over {times[-1] - times[0]:.2f} s")
    # How close to the limit the pace comes is measured by benchmarks/flow_control.py: on a
    # loaded machine, workers slow to start a granted job spend that start (the limit holds
    # whatever the load; the pace drops). Here the jobs must only keep moving.
    assert pace >= RATE * 0.4, f"{pace:.1f} jobs/s, far under the limit of {RATE}/s"


def test_a_concurrency_limit_of_one_never_overlaps_and_a_killed_holder_frees_its_slot(
    url: str, tmp_path: Path
) -> None:
    workers = Workers(url, tmp_path)
    workers.dispatch(
        "app.dispatch_many(flowjobs.exclusive.concurrency_limit(1, key='report'), "
        "[{'n': n} for n in range(40)])"
    )
    try:
        workers.start(4, "--concurrency", "4", "--lease", "2")
        workers.wait_for("end", 40)
        # A long job holds the slot; its worker is killed while it runs.
        workers.dispatch(
            "app.dispatch(flowjobs.exclusive.concurrency_limit(1, key='report'), {'n': 100, 'seconds': 60})"
        )
        workers.wait_for("begin", 41)
        holder_pid = next(pid for _, pid, n in workers.lines("begin") if n == 100)
        holder = next(p for p in workers.processes if p.pid == holder_pid)
        workers.dispatch(
            "app.dispatch(flowjobs.exclusive.concurrency_limit(1, key='report'), {'n': 101, 'seconds': 0.01})"
        )
        time.sleep(0.5)
        assert not [n for _, _, n in workers.lines("begin") if n == 101], "the slot was taken twice"
        holder.send_signal(signal.SIGKILL)
        killed_at = time.time()
        holder.wait(timeout=30)
        workers.processes.remove(holder)
        workers.wait_for("end", 42, timeout=60)  # job 101, and job 100 run again
    finally:
        workers.stop()
    begins = workers.lines("begin")
    ends = workers.lines("end")
    # Each end closes the latest begin of its job by the same process.
    spans = []
    for end, pid, n in ends:
        began = max(at for at, p, m in begins if p == pid and m == n and at <= end)
        spans.append((began, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two jobs of one key ran at once"
    waited = min(at for at, _, _ in begins if at > killed_at) - killed_at
    print(f"the killed holder's slot was taken again {waited:.2f} s after the kill (lease 2 s)")
    assert waited <= 2.0 + 2.0, f"the slot came back {waited:.2f} s after the kill, lease 2 s"


def test_a_paused_queue_starts_no_job_on_any_worker_process_within_a_second(url: str, tmp_path: Path) -> None:
    from jobs_core.app import JobsApp

    workers = Workers(url, tmp_path)
    workers.dispatch(
        "app.dispatch_many(flowjobs.exclusive, [{'n': n, 'seconds': 0.005} for n in range(4000)])"
    )
    with JobsApp(url, load_plugins=False) as app:
        try:
            workers.start(3, "--concurrency", "2")
            deadline = time.monotonic() + 90
            while len({pid for _, pid, _ in workers.lines("begin")}) < 3:
                assert time.monotonic() < deadline, "not every worker started jobs"
                time.sleep(0.05)
            assert app.pause_queue("flow") is True
            paused_at = time.time()
            time.sleep(2.0)
            late = [at for at, _, _ in workers.lines("begin") if at > paused_at + 1.0]
            assert late == [], f"{len(late)} jobs started more than 1 s after the pause"
            assert app.stats("flow")["reserved"] == 0, "reserved jobs went back to the queue"
            before = len(workers.lines("begin"))
            assert app.resume_queue("flow") is True
            workers.wait_for("begin", before + 100)
        finally:
            workers.stop()


def test_a_tenants_ten_jobs_start_within_a_second_behind_another_tenants_50000_on_a_worker_process(
    fair_url: str, tmp_path: Path
) -> None:
    workers = Workers(fair_url, tmp_path)
    workers.dispatch(
        "app.dispatch_many(flowjobs.step.tenant('a'), [{'kind': 'a', 'n': n} for n in range(50_000)])"
    )
    sent_file = tmp_path / "sent.txt"
    try:
        workers.start(1, "--concurrency", "8")
        workers.wait_for("a", 500)
        workers.dispatch(
            "import time\n"
            "app.stats('flow')\n"  # connected, the schema checked: the clock starts at the dispatch
            "sent = time.time()\n"
            "app.dispatch_many(flowjobs.step.tenant('b'), [{'kind': 'b', 'n': n} for n in range(10)])\n"
            f"open({str(sent_file)!r}, 'w').write(repr(sent))"
        )
        workers.wait_for("b", 10, timeout=30)
    finally:
        workers.stop()
    sent = float(sent_file.read_text())
    b_starts = workers.lines("b")
    waited = max(at for at, _, _ in b_starts) - sent
    a_done = len(workers.lines("a"))
    first = min(at for at, _, _ in b_starts) - sent
    print(f"tenant b's jobs started {first:.3f} to {waited:.3f} s after dispatch; {a_done} of a's had run")
    assert sorted(n for _, _, n in b_starts) == list(range(10))
    assert a_done < 50_000, "tenant a's backlog was gone before b dispatched: nothing was shown"
    assert waited < 1.0, f"tenant b's last job started {waited:.2f} s after its dispatch"
