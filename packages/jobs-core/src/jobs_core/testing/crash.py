"""Crash tests with real ``jobs worker`` processes: start workers, kill one with SIGKILL, check what ran.

A driver's promise of at-least-once delivery is proven against real worker
processes, not threads: a process killed with ``SIGKILL`` gets no chance to
release, acknowledge or flush anything. This module holds the pieces such a
test needs, for this project's drivers and any other:

* :func:`jobs_command` — the ``jobs`` console script, or ``python -m jobs_core``;
* :func:`require_backend` — skip when the backend is down (fail under ``CI``);
* :class:`WorkerRun` — a directory with a jobs module, its environment, its
  workers and the file the jobs record to (one ``PID TEXT`` line a run);
* :func:`kill_one_of_two` — the standard scenario: two workers drain
  ``total`` jobs of :data:`RECORD_JOBS`, one is killed midway; it returns a
  :class:`KillOutcome` whose checks say that nothing was lost and which jobs
  ran twice.

Example (a pytest test; ``url`` a fresh namespace of the backend)::

    def test_a_killed_worker_loses_nothing(url, tmp_path):
        require_backend(url)
        outcome = kill_one_of_two(url, tmp_path, total=2000, worker_args=["--concurrency", "4"])
        outcome.assert_lost_nothing()
        outcome.assert_reruns_finished_within(DEFAULT_ACK_INTERVAL + 0.025 + SCHEDULING_SLACK)
        outcome.assert_reruns_at_most(ack_window_bound(concurrency=4, job_seconds=0.005))
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs_core.app import JobsApp
from jobs_core.job import job

__all__ = [
    "DEFAULT_ACK_INTERVAL",
    "RECORD_JOBS",
    "SCHEDULING_SLACK",
    "KillOutcome",
    "WorkerRun",
    "ack_window_bound",
    "jobs_command",
    "kill_one_of_two",
    "require_backend",
]

#: The worker's default acknowledgement interval (``Worker(ack_interval=...)``), seconds.
DEFAULT_ACK_INTERVAL = 0.05

#: How much later than asked a thread may run on a busy machine (a CI runner running
#: several test sessions at once), seconds: room to give the windows of the checks.
SCHEDULING_SLACK = 0.05

#: A jobs module for :func:`kill_one_of_two`: ``crash.record`` on queue
#: ``crash`` sleeps ``$CRASH_JOB_SECONDS`` and records ``PID N TIME`` (its payload's ``n``, and
#: when it finished: Unix seconds).
RECORD_JOBS = """
import os
import time

from jobs_core import job

OUT = os.open(os.environ["JOBS_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(text):
    os.write(OUT, f"{os.getpid()} {text}\\n".encode())


@job(name="crash.record", queue="crash")
def record(payload):
    time.sleep(float(os.environ.get("CRASH_JOB_SECONDS", "0.002")))
    note(f"{payload['n']} {time.time():.6f}")
"""


def _nothing(payload: object) -> None:
    return None


#: ``crash.record`` as a dispatcher sees it (the workers run :data:`RECORD_JOBS`'s).
_RECORD = job(name="crash.record", queue="crash")(_nothing)


def jobs_command() -> list[str]:
    """The command that runs ``jobs``: its console script if installed, else ``python -m jobs_core``."""
    exe = shutil.which("jobs")
    return [exe] if exe else [sys.executable, "-m", "jobs_core"]


def require_backend(url: str) -> None:
    """Skip the calling test when the backend at ``url`` does not answer a ping.

    Under ``CI`` (the environment variable set) the test fails instead: a
    backend that CI should provide but does not is a broken build, not a
    skipped test. The message names the backend by its URL without password.
    """
    import pytest  # the testing extra; imported here so the module loads without it

    app = JobsApp(url, load_plugins=False)
    try:
        app.driver.ping()
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        message = f"backend unreachable at {app.config.display_url}: {type(exc).__name__}: {first}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        app.close()


class WorkerRun:
    """One crash test's directory: a jobs module, the environment its workers get, their records.

    ``module_source`` is written to ``directory/<module>.py`` and imported by
    each worker (``--import``); its jobs write ``PID TEXT`` lines to the file
    named by ``$JOBS_RECORD_FILE`` (see :data:`RECORD_JOBS`). ``env`` adds
    variables for the workers.
    """

    def __init__(
        self,
        url: str,
        directory: Path,
        module_source: str = RECORD_JOBS,
        *,
        module: str = "crashjobs",
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.directory = directory
        self.module = module
        (directory / f"{module}.py").write_text(module_source)
        self.record_file = directory / "records.txt"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]),
            "JOBS_RECORD_FILE": str(self.record_file),
            **(env or {}),
        }

    def worker(self, queue: str, *args: str) -> subprocess.Popen[str]:
        """Start ``jobs worker`` on ``queue``: the jobs module, a 3 s lease, no progress lines, ``args``."""
        command = [*jobs_command(), "worker", "--url", self.url, "--queue", queue, "--import", self.module]
        command += ["--lease", "3", "--progress", "0", *args]
        return subprocess.Popen(command, env=self.env, cwd=self.directory, stderr=subprocess.PIPE, text=True)

    def jobs(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run another ``jobs`` command (``retry``, ``stats``...) against the backend and wait for it."""
        command = [*jobs_command(), *args, "--url", self.url]
        return subprocess.run(
            command,
            check=False,
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def records(self) -> list[tuple[int, str]]:
        """What the jobs recorded so far, in order: ``(pid, text)`` per line."""
        if not self.record_file.exists():
            return []
        found = []
        for line in self.record_file.read_text().splitlines():
            pid, _, text = line.partition(" ")
            found.append((int(pid), text))
        return found

    @staticmethod
    def wait_for(
        condition: Callable[[], bool],
        what: str,
        timeout: float,
        workers: Iterable[subprocess.Popen[str]],
    ) -> None:
        """Wait until ``condition()``; fail naming ``what`` at ``timeout`` or when a worker exits first."""
        deadline = time.monotonic() + timeout
        watched = list(workers)
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            for proc in watched:
                if proc.poll() is not None:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise AssertionError(
                        f"a worker exited (status {proc.returncode}) before {what}: {err[-2000:]}"
                    )
            time.sleep(0.02)

    @staticmethod
    def kill(proc: subprocess.Popen[str]) -> None:
        """SIGKILL ``proc`` and reap it."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    @staticmethod
    def stop(workers: Iterable[subprocess.Popen[str]], timeout: float = 60) -> list[int]:
        """SIGTERM the workers still running and wait (SIGKILL past ``timeout``); their exit statuses."""
        procs = list(workers)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        return [proc.returncode for proc in procs]


@dataclass(frozen=True)
class KillOutcome:
    """What :func:`kill_one_of_two` saw: every record (``(pid, "N TIME")``), the killed
    worker's pid, ``total``, and when it was killed (Unix seconds).
    """

    records: list[tuple[int, str]]
    victim_pid: int
    total: int
    killed_at: float = 0.0

    @property
    def counts(self) -> Counter[str]:
        """How many times each job (its ``n``) ran."""
        return Counter(text.split()[0] for _, text in self.records)

    def assert_reruns_finished_within(self, window: float) -> None:
        """Every job that ran twice had first finished (on the killed worker) less than
        ``window`` seconds before the kill: what runs again is only recent work whose
        acknowledgement had not reached the backend yet.
        """
        again = {n for n, times in self.counts.items() if times > 1}
        ages = sorted(
            self.killed_at - float(text.split()[1])
            for pid, text in self.records
            if pid == self.victim_pid and text.split()[0] in again
        )
        early = [round(age, 3) for age in ages if age > window]
        assert not early, f"{len(early)} jobs finished over {window} s before the kill ran again: {early[:5]}"

    @property
    def duplicates(self) -> int:
        """Runs beyond the first of each job."""
        return len(self.records) - len(self.counts)

    def assert_lost_nothing(self) -> None:
        """Every job ran at least once."""
        missing = {str(n) for n in range(self.total)} - set(self.counts)
        assert not missing, f"{len(missing)} jobs never ran, e.g. {sorted(missing)[:5]}"

    def assert_reruns_at_most(self, bound: int) -> None:
        """At most ``bound`` runs twice, none more than twice, and only jobs the killed worker ran."""
        counts = self.counts
        assert self.duplicates <= bound, f"{self.duplicates} jobs ran again, more than {bound}"
        assert max(counts.values(), default=0) <= 2, "a job ran three times or more"
        victim = {text.split()[0] for pid, text in self.records if pid == self.victim_pid}
        again = {text for text, n in counts.items() if n > 1}
        assert again <= victim, f"jobs the killed worker never ran ran twice: {sorted(again - victim)[:5]}"


def ack_window_bound(
    concurrency: int, job_seconds: float, ack_interval: float = DEFAULT_ACK_INTERVAL, slack: float = 0.025
) -> int:
    """Jobs a worker killed mid-run may run again: its running jobs, plus those it finished
    within one acknowledgement interval (and ``slack`` for an acknowledgement in flight).
    """
    return concurrency + math.ceil(concurrency * (ack_interval + slack) / job_seconds)


def kill_one_of_two(
    url: str,
    directory: Path,
    *,
    total: int,
    worker_args: Sequence[str] = (),
    job_seconds: float = 0.002,
    kill_at: float = 0.25,
) -> KillOutcome:
    """Dispatch ``total`` jobs of :data:`RECORD_JOBS`, drain them with two workers, SIGKILL the
    first once a ``kill_at`` share has run and it has run some of them, and let the other finish;
    every job must run within 3 minutes.

    Fails if the first worker had run nothing before the others were done (the
    test would prove nothing) or the survivor does not exit cleanly on SIGTERM.
    """
    run = WorkerRun(url, directory, env={"CRASH_JOB_SECONDS": str(job_seconds)})
    with JobsApp(url, load_plugins=False) as app:
        app.dispatch_many(_RECORD, [{"n": n} for n in range(total)])
    workers = [run.worker("crash", *worker_args) for _ in range(2)]
    victim, survivor = workers
    try:

        def time_to_kill() -> bool:  # a share has run, some of it by the victim (a slow start is no kill)
            records = run.records()
            started = len(records) >= total * kill_at and any(pid == victim.pid for pid, _ in records)
            return started or len(records) >= total

        run.wait_for(time_to_kill, "jobs to run before the kill", 120, workers)
        killed_at = time.time()
        run.kill(victim)
        assert any(pid == victim.pid for pid, _ in run.records()), "the killed worker had run no job"

        def all_ran() -> bool:
            return len({text.split()[0] for _, text in run.records()}) >= total

        run.wait_for(all_ran, "every job to run", 180, [survivor])
        assert run.stop([survivor]) == [0], "the surviving worker did not stop cleanly"
    finally:
        run.stop(workers, timeout=5)
    return KillOutcome(run.records(), victim.pid, total, killed_at)
