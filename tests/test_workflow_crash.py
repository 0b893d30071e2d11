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
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_core import JobsApp, job
from jobs_core.testing.crash import WorkerRun
from jobs_core.workflows import Batch, Chain, status

BATCH_SIZE = 2000
CHAIN_LENGTH = 50
PREFETCH = 20

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from jobs_core import job
    from jobs_core.workflows import previous_result

    OUT = os.open(os.environ["JOBS_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


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


@pytest.fixture
def url(workflow_url: str) -> str:
    return workflow_url


class Run(WorkerRun):
    """A :class:`WorkerRun` with the workflow jobs, the mark file that makes ``wf.flaky`` fail."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.fail_mark = tmp_path / "fail-mark"
        super().__init__(url, tmp_path, JOBS_MODULE, module="wfjobs", env={"WF_FAIL": str(self.fail_mark)})

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

    def wf_worker(self, *extra: str) -> subprocess.Popen[str]:
        return self.worker("wf", "--prefetch", str(PREFETCH), *extra)


def test_a_2000_job_batch_with_a_killed_worker_runs_then_and_finally_once(url: str, tmp_path: Path) -> None:
    run = Run(url, tmp_path)
    with run.app() as app:
        steps = [(STUBS["member"], {"n": n}) for n in range(BATCH_SIZE)]
        batch = Batch(app, steps).then(STUBS["callback"], {"kind": "then"})
        batch_id = batch.finally_(STUBS["callback"], {"kind": "finally"}).dispatch()
    workers = [run.wf_worker(), run.wf_worker()]
    victim, survivor = workers
    try:
        run.wait_for(lambda: len(run.records()) >= BATCH_SIZE // 4, "a quarter of the batch", 120, workers)
        run.kill(victim)
        assert any(pid == victim.pid for pid, _ in run.records()), "the killed worker ran nothing"
        workers = [survivor]

        def finally_ran() -> bool:
            return any(text.startswith("callback finally") for _, text in run.records())

        run.wait_for(finally_ran, "the finally callback", 180, workers)
        time.sleep(1.0)  # room for a second callback, were one stored
    finally:
        run.stop([victim, survivor])
    texts = [text for _, text in run.records()]
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
    workers = [run.wf_worker(), run.wf_worker()]
    try:
        run.wait_for(lambda: len(run.records()) >= CHAIN_LENGTH // 3, "a third of the chain", 120, workers)
        # Kill whichever worker ran the latest link: it is the likeliest to hold the next one.
        latest_pid = run.records()[-1][0]
        victim = next(p for p in workers if p.pid == latest_pid)
        run.kill(victim)
        survivor = next(p for p in workers if p is not victim)
        run.wait_for(
            lambda: f"link {CHAIN_LENGTH - 1}" in {t for _, t in run.records()},
            "the last link",
            180,
            [survivor],
        )
        time.sleep(1.0)  # room for a link stored twice to run
    finally:
        run.stop(workers)
    lines = run.records()
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
    first = run.wf_worker("--stop-when-empty")
    assert first.wait(timeout=120) == 0
    assert [t for _, t in run.records()] == ["link 0", "link 1"]
    status = run.status("chain", chain_id)
    assert (status["status"], status["position"], status["failed"], status["pending"]) == ("failed", 2, 1, 2)
    (failed_id,) = status["failed_ids"]  # type: ignore[misc]
    run.fail_mark.unlink()
    retried = run.jobs("retry", str(failed_id))
    assert retried.returncode == 0, retried.stderr
    second = run.wf_worker("--stop-when-empty")
    assert second.wait(timeout=120) == 0
    assert [t for _, t in run.records()] == [f"link {i}" for i in range(5)]
    status = run.status("chain", chain_id)
    assert (status["status"], status["succeeded"], status["failed"], status["finished"]) == (
        "succeeded",
        5,
        0,
        True,
    )
