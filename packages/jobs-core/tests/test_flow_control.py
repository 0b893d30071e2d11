"""Flow control with real workers on the memory driver: pause, queue order, expiry, coalescing,
rate and concurrency limits, and the errors of bad declarations.

Workers run in threads of this process and share one named memory store,
as worker processes share a database. The properties checked are counts and
orders recorded by the jobs themselves, with generous deadlines.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core import Jobs, JobsApp, job
from jobs_core.errors import ConfigurationError
from jobs_core.flow import FlowGate, RateLimit
from jobs_core.scheduler import Scheduler
from jobs_core.worker import Worker

STARTS: dict[str, list[tuple[float, Any]]] = {}
LOCK = threading.Lock()


def record(kind: str, payload: Any) -> None:
    with LOCK:
        STARTS.setdefault(kind, []).append((time.monotonic(), payload))


def starts(kind: str) -> list[tuple[float, Any]]:
    with LOCK:
        return list(STARTS.get(kind, []))


@job(name="flow.step", queue="a")
def step(payload: Any) -> None:
    record(payload.get("kind", "step"), payload)
    time.sleep(payload.get("sleep", 0.0))


@pytest.fixture
def store() -> str:
    return f"memory://flow-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(store: str) -> Iterator[JobsApp]:
    STARTS.clear()
    with JobsApp(store, load_plugins=False) as built:
        built.register(step)
        yield built


def run_workers(
    app: JobsApp, count: int, queues: list[str], **options: Any
) -> tuple[list[Worker], list[Any]]:
    """Start ``count`` workers in threads, each with its own driver on the app's store."""
    workers, threads = [], []
    for _ in range(count):
        own = JobsApp(app.config.url, load_plugins=False)
        own.register(step)
        worker = own.worker(queues, install_signal_handlers=False, **options)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        workers.append(worker)
        threads.append(thread)
    return workers, threads


def stop_all(workers: list[Worker], threads: list[Any]) -> None:
    for worker in workers:
        worker.stop(force=True)
    for thread in threads:
        thread.join(30)


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- pause and resume ------------------------------------------------------------------


def test_a_paused_queue_starts_no_job_on_any_worker_within_a_second_and_resumes(app: JobsApp) -> None:
    app.dispatch_many(step, [{"n": n, "sleep": 0.01} for n in range(3000)])
    workers, threads = run_workers(app, 3, ["a"], concurrency=2)
    try:
        wait_for(lambda: len(starts("step")) >= 50)
        assert app.pause_queue("a") is True
        paused_at = time.monotonic()
        assert app.paused_queues() == ["a"]
        time.sleep(2.0)
        late = [t for t, _ in starts("step") if t > paused_at + 1.0]
        assert late == [], f"{len(late)} jobs started more than 1 s after the pause"
        before = len(starts("step"))
        assert app.stats("a")["reserved"] == 0, "prefetched jobs went back to the queue"
        assert app.resume_queue("a") is True
        wait_for(lambda: len(starts("step")) >= before + 50)
    finally:
        stop_all(workers, threads)


def test_pause_of_an_unknown_or_bad_queue(app: JobsApp) -> None:
    assert app.pause_queue("not-yet-used") is True
    assert app.resume_queue("not-yet-used") is True
    assert app.resume_queue("not-yet-used") is False
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.pause_queue("bad name")


def test_the_facade_and_the_cli_pause_and_list(app: JobsApp, store: str) -> None:
    from click.testing import CliRunner
    from jobs_core.cli import cli
    from jobs_core.facade import set_default_app

    previous = set_default_app(app)
    try:
        assert Jobs.pause_queue("reports") is True
        assert Jobs.paused_queues() == ["reports"]
        assert Jobs.resume_queue("reports") is True
    finally:
        set_default_app(previous)
    runner = CliRunner()
    out = runner.invoke(cli, ["queue", "pause", "--url", store, "a"])
    assert out.exit_code == 0, out.output
    assert "queue 'a' paused" in out.output
    app.dispatch(step, {"n": 1})
    out = runner.invoke(cli, ["stats", "--url", store])
    assert "a (paused)" in out.output
    out = runner.invoke(cli, ["stats", "--url", store, "--json"])
    assert '"paused": [' in out.output
    out = runner.invoke(cli, ["queue", "resume", "--url", store, "a"])
    assert "queue 'a' resumed" in out.output
    assert app.paused_queues() == []


# -- queue order -----------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"weights": {"a": 3, "b": 1}}])
def test_a_job_on_a_second_queue_starts_within_half_a_second_behind_a_backlog(
    app: JobsApp, options: dict[str, Any]
) -> None:
    app.dispatch_many(step, [{"n": n, "sleep": 0.005} for n in range(1500)])
    workers, threads = run_workers(app, 1, ["a", "b"], concurrency=8, **options)
    try:
        wait_for(lambda: len(starts("step")) >= 40)
        sent = time.monotonic()
        app.dispatch(step.on_queue("b"), {"kind": "ping"})
        wait_for(lambda: starts("ping"))
        latency = starts("ping")[0][0] - sent
        a_done = len(starts("step"))
        assert a_done < 1200, f"the ping waited for {a_done} of the 1,500 jobs on queue a"
        assert latency < 0.5, f"the ping started {latency:.2f} s after dispatch"
    finally:
        stop_all(workers, threads)


def test_strict_order_serves_the_second_queue_once_the_first_is_empty(app: JobsApp) -> None:
    app.dispatch_many(step, [{"n": n} for n in range(300)])
    app.dispatch(step.on_queue("b"), {"kind": "ping"})
    worker = app.worker(["a", "b"], queue_order="strict", stop_when_empty=True, install_signal_handlers=False)
    worker.run()
    ((ping_at, _),) = starts("ping")
    assert all(t <= ping_at for t, _ in starts("step"))


def test_weighted_order_puts_each_queue_first_in_proportion_to_its_weight(app: JobsApp) -> None:
    gate = FlowGate(app.driver, ["a", "b", "c"], "weighted", {"a": 5, "b": 2})
    firsts = [gate.queues()[0] for _ in range(80)]
    assert (firsts.count("a"), firsts.count("b"), firsts.count("c")) == (50, 20, 10)
    robin = FlowGate(app.driver, ["a", "b"], "round-robin")
    assert [robin.queues() for _ in range(3)] == [["a", "b"], ["b", "a"], ["a", "b"]]


def test_bad_queue_order_options_are_refused(app: JobsApp) -> None:
    with pytest.raises(ConfigurationError, match="queue_order must be one of"):
        app.worker(["a"], queue_order="random")
    with pytest.raises(ConfigurationError, match="does not serve"):
        app.worker(["a"], weights={"b": 2})
    with pytest.raises(ConfigurationError, match="weight of queue 'a'"):
        app.worker(["a"], weights={"a": 0})


# -- expiry ------------------------------------------------------------------------------


def test_an_expired_job_never_runs_and_is_counted(app: JobsApp) -> None:
    app.dispatch(step.expires(0.2), {"kind": "stale"})
    app.dispatch(step.expires(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)), {"kind": "stale"})
    app.dispatch(step.expires(3600), {"kind": "fresh"})
    time.sleep(0.3)
    worker = app.worker(["a"], stop_when_empty=True, install_signal_handlers=False)
    worker.run()
    assert starts("stale") == []
    assert len(starts("fresh")) == 1
    assert worker.stats.expired == 2
    assert app.stats("a")["pending"] == 0


def test_bad_expiry_is_refused_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match="expires"):
        step.expires(0)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        step.expires(dt.datetime(2030, 1, 1))


# -- coalescing ----------------------------------------------------------------------------


def test_an_every_second_schedule_with_its_workers_stopped_leaves_one_waiting_job(app: JobsApp) -> None:
    now = [time.time() - 40.0]
    scheduler = Scheduler(app.driver, registry=app.registry, clock=lambda: now[0])
    scheduler.schedule_every(step, 1, {"kind": "beat"})
    for _ in range(30):  # 30 s with the scheduler running and no worker
        now[0] += 1.0
        scheduler.tick()
    assert app.stats("a")["pending"] == 1
    app.work("a")
    assert len(starts("beat")) == 1
    now[0] += 1.0
    assert scheduler.tick() == 1, "once the job ran, the next tick is enqueued"
    every = Scheduler(app.driver, registry=app.registry, clock=lambda: now[0])
    every.schedule_every(step, 1, {"kind": "all"}, name="every-tick", coalesce=False)
    for _ in range(5):
        now[0] += 1.0
        every.tick()
    assert app.stats("a")["pending"] == 1 + 5


# -- rate limits --------------------------------------------------------------------------


def test_a_rate_limited_job_waits_for_room_without_counting_an_attempt(app: JobsApp) -> None:
    app.dispatch_many(step.rate_limit(5, per=1.0, key="api"), [{"kind": "api", "n": n} for n in range(12)])
    workers, threads = run_workers(app, 2, ["a"], concurrency=2)
    try:
        wait_for(lambda: len(starts("api")) == 12)
    finally:
        stop_all(workers, threads)
    times = sorted(t for t, _ in starts("api"))
    for index, at in enumerate(times):
        in_window = [t for t in times[index:] if t < at + 1.0 - 0.05]
        assert len(in_window) <= 5, f"{len(in_window)} starts within one second"
    assert times[-1] - times[0] >= 1.9, "12 starts at 5 per second take two full windows"
    assert all(w.stats.retried == 0 and w.stats.failed == 0 for w in workers)


def test_a_key_function_picks_the_window(app: JobsApp) -> None:
    limited = step.rate_limit(1, per=60, key=lambda p: p["host"])
    app.dispatch_many(limited, [{"kind": "host", "host": h} for h in ("x", "y", "x")])
    app.worker(["a"], stop_when_empty=True, install_signal_handlers=False).run()
    assert sorted(p["host"] for _, p in starts("host")) == ["x", "y"]
    assert app.stats("a")["delayed"] == 1


def test_a_queue_rate_limit_holds_for_every_worker_of_the_queue(app: JobsApp) -> None:
    app.dispatch_many(step, [{"kind": "queued", "n": n} for n in range(6)])
    limits = {"a": RateLimit(3, per=60)}
    workers, threads = run_workers(app, 2, ["a"], queue_rate_limits=limits)
    try:
        wait_for(lambda: len(starts("queued")) == 3)
        time.sleep(0.5)
        assert len(starts("queued")) == 3, "the queue's limit of 3 per minute held across both workers"
    finally:
        stop_all(workers, threads)
    assert app.stats("a")["delayed"] == 3
    with pytest.raises(ConfigurationError, match="no key"):
        app.worker(["a"], queue_rate_limits={"a": RateLimit(3, key="x")})
    with pytest.raises(ConfigurationError, match="does not serve"):
        app.worker(["a"], queue_rate_limits={"b": RateLimit(3)})


def test_the_worker_command_takes_queue_rate_limits() -> None:
    from jobs_core.flow import parse_rate

    assert parse_rate("emails=100/60") == ("emails", RateLimit(100, 60.0))
    with pytest.raises(ConfigurationError, match="QUEUE=COUNT/SECONDS"):
        parse_rate("emails=many")
    with pytest.raises(ConfigurationError, match="rate_limit per"):
        parse_rate("emails=5/0")


# -- concurrency limits ----------------------------------------------------------------------


def test_a_concurrency_limit_of_one_never_overlaps_across_workers(app: JobsApp) -> None:
    spans: list[tuple[float, float]] = []

    @job(name="flow.exclusive", queue="a")
    def exclusive(payload: Any) -> None:
        began = time.monotonic()
        time.sleep(0.01)
        with LOCK:
            spans.append((began, time.monotonic()))

    app.register(exclusive)
    app.dispatch_many(exclusive.concurrency_limit(1, key="report"), [{"n": n} for n in range(20)])
    workers, threads = [], []
    for _ in range(3):
        own = JobsApp(app.config.url, load_plugins=False)
        own.register(exclusive)
        worker = own.worker(["a"], concurrency=4, install_signal_handlers=False)
        threads.append(threading.Thread(target=worker.run, daemon=True))
        workers.append(worker)
        threads[-1].start()
    try:
        wait_for(lambda: len(spans) == 20)
    finally:
        stop_all(workers, threads)
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two jobs of one key ran at once"


# -- tenants ---------------------------------------------------------------------------------


def test_a_tenants_ten_jobs_start_within_a_second_behind_another_tenants_50000(app: JobsApp) -> None:
    for start in range(0, 50_000, 10_000):
        app.dispatch_many(step.tenant("a"), [{"kind": "a", "n": n} for n in range(start, start + 10_000)])
    workers, threads = run_workers(app, 1, ["a"], concurrency=8)
    try:
        wait_for(lambda: len(starts("a")) >= 200)
        sent = time.monotonic()
        app.dispatch_many(step.tenant("b"), [{"kind": "b", "n": n} for n in range(10)])
        wait_for(lambda: len(starts("b")) == 10)
        waited = max(t for t, _ in starts("b")) - sent
        a_between = len([t for t, _ in starts("a") if sent < t < sent + waited])
    finally:
        stop_all(workers, threads)
    assert a_between < 1000, f"{a_between} of tenant a's jobs started before tenant b's ten"
    assert waited < 1.0, f"tenant b's last job started {waited:.2f} s after dispatch"


# -- bad declarations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declare", "text"),
    [
        (lambda: step.rate_limit(0), "rate_limit count must be an int >= 1"),
        (lambda: step.rate_limit(-3), "rate_limit count must be an int >= 1"),
        (lambda: step.rate_limit(5, per=0), "rate_limit per must be a number of seconds > 0"),
        (lambda: step.rate_limit(5, per=float("nan")), "rate_limit per"),
        (lambda: step.rate_limit(5, key=7), "rate_limit key must be a string"),
        (lambda: step.rate_limit(5, key=""), "1 to 200 characters"),
        (lambda: step.concurrency_limit(0), "concurrency_limit count must be an int >= 1"),
        (lambda: step.tenant(3), "tenant must be a string"),
        (lambda: RateLimit(True), "rate_limit count"),  # type: ignore[arg-type]
    ],
)
def test_bad_limits_are_refused_where_they_are_declared(declare: Any, text: str) -> None:
    with pytest.raises(ConfigurationError, match=text.replace("(", r"\(")):
        declare()


def test_a_key_function_that_raises_or_returns_no_string_is_refused_at_dispatch(app: JobsApp) -> None:
    def broken(payload: Any) -> str:
        raise KeyError("host")

    with pytest.raises(ConfigurationError, match="rate_limit key function raised KeyError"):
        app.dispatch(step.rate_limit(5, key=broken), {"n": 1})
    with pytest.raises(ConfigurationError, match="function's result must be a string, got int"):
        app.dispatch(step.concurrency_limit(2, key=lambda p: p["n"]), {"n": 1})
    assert app.stats("a")["pending"] == 0, "nothing was stored"
