"""The worker on the memory driver: outcomes, retries, timeouts, concurrency, leases, shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import pytest
from jobs_core import Delivery, Job, JobRun, Jobs, JobsApp, Retry, SkipJob, hookimpl, job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import BackendUnavailable
from jobs_core.facade import set_default_app
from jobs_core.worker import Worker

RUNS: dict[str, int] = {}
LOCK = threading.Lock()


def count(key: str) -> int:
    with LOCK:
        RUNS[key] = RUNS.get(key, 0) + 1
        return RUNS[key]


class TestJob(Job):
    __test__ = False

    def handle(self, payload: Any) -> Any:
        count("TestJob")
        return payload


class AlwaysFails(Job):
    retry_delay = 0.0

    def handle(self, payload: Any) -> None:
        count("AlwaysFails")
        raise ValueError(f"broken {payload['n']}")


class Sleeper(Job):
    def handle(self, payload: Any) -> None:
        count("Sleeper.start")
        time.sleep(payload["seconds"])
        count("Sleeper.done")


class AsyncSleeper(Job):
    async def handle(self, payload: Any) -> str:
        count("AsyncSleeper.start")
        await asyncio.sleep(payload["seconds"])
        return "slept"


class AsksForRetry(Job):
    def handle(self, payload: Any) -> None:
        if count("AsksForRetry") == 1:
            raise Retry(0, "not yet")


class Skips(Job):
    def handle(self, payload: Any) -> None:
        count("Skips")
        raise SkipJob("nothing to do")


@job(name="tests.worker.concurrent")
def concurrent(payload: Any) -> None:
    with LOCK:
        RUNS["now"] = RUNS.get("now", 0) + 1
        RUNS["peak"] = max(RUNS.get("peak", 0), RUNS["now"])
    time.sleep(payload)
    with LOCK:
        RUNS["now"] -= 1


@pytest.fixture(autouse=True)
def clean_runs() -> None:
    RUNS.clear()


@pytest.fixture
def facade() -> Iterator[None]:
    previous = set_default_app(JobsApp("memory://"))
    yield
    Jobs.app().close()
    set_default_app(previous)


@pytest.fixture
def app() -> Iterator[JobsApp]:
    with JobsApp("memory://") as app:
        yield app


def test_the_lifecycle_of_the_origin_system(facade: None) -> None:
    Jobs.dispatch(TestJob, {"test": True})
    assert Jobs.work("default", 1) == 1
    assert Jobs.stats()["completed"] == 1
    assert RUNS["TestJob"] == 1


def test_work_stops_at_max_jobs_or_when_nothing_is_due(facade: None) -> None:
    Jobs.dispatch_many(TestJob, range(5))
    assert Jobs.work("default", 2) == 2
    assert Jobs.stats()["pending"] == 3
    assert Jobs.work("default") == 3
    assert Jobs.work("default") == 0
    assert Jobs.stats()["completed"] == 5


def test_a_job_that_always_raises_runs_retries_plus_one_times_then_is_failed_and_can_be_retried(
    facade: None,
) -> None:
    Jobs.dispatch(AlwaysFails().retries(2), {"n": 7})
    assert Jobs.work() == 3
    assert RUNS["AlwaysFails"] == 3
    [failed] = Jobs.failed_jobs()
    assert failed.name == AlwaysFails.job_name
    assert failed.queue == "default"
    assert failed.payload == {"n": 7}
    assert failed.attempts == 3
    assert failed.error.startswith("ValueError: broken 7")
    assert "Traceback (most recent call last)" in failed.error
    assert 'raise ValueError(f"broken {payload' in failed.error
    assert failed.failed_at <= time.time()
    assert Jobs.stats()["failed"] == 1
    assert Jobs.retry(failed.id) is True
    assert Jobs.stats()["failed"] == 0
    assert Jobs.work(max_jobs=1) == 1
    assert RUNS["AlwaysFails"] == 4


def test_a_sync_job_past_its_timeout_is_stopped_and_failed_and_the_worker_goes_on(app: JobsApp) -> None:
    app.dispatch(Sleeper().timeout(1).retries(0), {"seconds": 30})
    app.dispatch(TestJob, "next")
    started = time.monotonic()
    assert app.work() == 2
    assert time.monotonic() - started < 10
    [failed] = app.failed_jobs()
    assert failed.error.startswith("jobs_core.errors.JobTimeout: job exceeded its timeout of 1s")
    assert app.stats()["completed"] == 1
    assert RUNS["TestJob"] == 1


def test_a_timed_job_that_succeeds_in_its_child_process_is_acked(app: JobsApp) -> None:
    app.dispatch(Sleeper().timeout(10), {"seconds": 0})
    app.dispatch(AlwaysFails().timeout(10).retries(0), {"n": 1})
    assert app.work() == 2
    assert app.stats()["completed"] == 1
    [failed] = app.failed_jobs()
    assert failed.error.startswith("ValueError: broken 1")
    assert "Traceback" in failed.error


def test_an_async_job_past_its_timeout_is_cancelled(app: JobsApp) -> None:
    app.dispatch(AsyncSleeper().timeout(0.5).retries(0), {"seconds": 30})
    app.dispatch(AsyncSleeper(), {"seconds": 0})
    started = time.monotonic()
    assert app.work() == 2
    assert time.monotonic() - started < 10
    assert app.stats()["completed"] == 1
    assert "JobTimeout" in app.failed_jobs()[0].error


def test_a_timed_out_attempt_counts_and_is_retried(app: JobsApp) -> None:
    app.dispatch(Sleeper().timeout(0.3).retries(1).retry_after(0), {"seconds": 30})
    assert app.work() == 2
    [failed] = app.failed_jobs()
    assert failed.attempts == 2


def test_unknown_job_names_and_undecodable_messages_go_to_the_failed_store(app: JobsApp) -> None:
    app.register(TestJob)
    app.driver.enqueue([TestJob().to_message("x").replace(name="nobody.Knows")])
    app.driver.inject_raw("default", b"{not json")
    app.dispatch(TestJob, "after")
    assert app.work() == 2
    errors = sorted(f.error for f in app.failed_jobs())
    assert any("job 'nobody.Knows' is not registered in this worker" in e for e in errors)
    assert any("malformed" in e for e in errors)
    assert RUNS["TestJob"] == 1


def test_retry_raised_by_a_job_retries_after_its_delay_and_skip_acks(app: JobsApp) -> None:
    app.dispatch(AsksForRetry, None)
    app.dispatch(Skips, None)
    assert app.work() == 3
    assert RUNS == {"AsksForRetry": 2, "Skips": 1}
    assert app.stats()["completed"] == 2
    assert app.stats()["failed"] == 0


def test_a_retry_waits_for_the_policy_delay(app: JobsApp) -> None:
    app.dispatch(AlwaysFails().retries(1).retry_after(60, backoff="fixed"), {"n": 1})
    assert app.work() == 1
    assert app.stats()["delayed"] == 1


def test_sync_jobs_run_concurrently_on_threads(app: JobsApp) -> None:
    app.dispatch_many(concurrent, [0.3] * 8)
    worker = app.worker("default", concurrency=4, stop_when_empty=True, install_signal_handlers=False)
    assert worker.run() == 8
    assert RUNS["peak"] == 4
    assert app.stats()["completed"] == 8


def test_async_jobs_run_concurrently_on_the_event_loop(app: JobsApp) -> None:
    app.dispatch_many(AsyncSleeper, [{"seconds": 1}] * 6)
    worker = app.worker(concurrency=6, stop_when_empty=True, install_signal_handlers=False)
    started = time.monotonic()
    assert worker.run() == 6
    assert time.monotonic() - started < 4
    assert app.stats()["completed"] == 6


def test_the_heartbeat_keeps_a_long_job_from_being_redelivered(app: JobsApp) -> None:
    shared = JobsApp("memory://heartbeat")
    shared.dispatch(Sleeper, {"seconds": 1.5})
    other = JobsApp("memory://heartbeat").driver
    worker = shared.worker(lease=0.3, stop_when_empty=True, install_signal_handlers=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.8)
    assert other.reserve(["default"], limit=1, lease=30) == []
    thread.join()
    assert RUNS["Sleeper.done"] == 1
    assert shared.stats()["completed"] == 1
    shared.close()


def test_stop_lets_the_running_job_finish_and_leaves_the_rest_unrun(app: JobsApp) -> None:
    app.dispatch_many(Sleeper, [{"seconds": 0.6}] * 3)
    worker = app.worker(prefetch=10, install_signal_handlers=False, poll_interval=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    while RUNS.get("Sleeper.start", 0) < 1:
        time.sleep(0.01)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    stats = app.stats()
    assert stats["completed"] == RUNS["Sleeper.done"] >= 1
    assert stats["pending"] == 3 - stats["completed"]
    assert stats["reserved"] == 0
    assert all(d.message.attempts == 0 for d in app.driver.reserve(["default"], limit=10))


def test_stop_gives_back_prefetched_jobs_at_once_and_waits_for_running_ones(app: JobsApp) -> None:
    app.dispatch_many(Sleeper, [{"seconds": 0.5}] * 6)
    worker = app.worker(concurrency=2, prefetch=4, install_signal_handlers=False, poll_interval=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    while RUNS.get("Sleeper.start", 0) < 2:
        time.sleep(0.01)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert RUNS["Sleeper.done"] == 2
    assert worker.stats.released == 4
    assert app.stats() == {"pending": 4, "delayed": 0, "reserved": 0, "completed": 2, "failed": 0}


def test_after_the_grace_period_running_jobs_are_given_back_without_an_attempt(app: JobsApp) -> None:
    app.dispatch_many(Sleeper, [{"seconds": 30}] * 2)
    worker = app.worker(concurrency=2, grace=0.5, install_signal_handlers=False, poll_interval=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    while RUNS.get("Sleeper.start", 0) < 2:
        time.sleep(0.01)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert worker.stats.released == 2
    deliveries = app.driver.reserve(["default"], limit=10)
    assert len(deliveries) == 2
    assert all(d.message.attempts == 0 for d in deliveries)


def test_services_start_and_stop_with_the_worker(app: JobsApp) -> None:
    seen: list[str] = []

    def service(stop: threading.Event) -> None:
        seen.append("started")
        stop.wait()
        seen.append("stopped")

    worker = app.worker(stop_when_empty=True, install_signal_handlers=False, services=[service])
    worker.run()
    assert seen == ["started", "stopped"]


def test_bad_worker_options_are_refused(app: JobsApp) -> None:
    from jobs_core.errors import ConfigurationError, InvalidName

    with pytest.raises(ConfigurationError, match="concurrency"):
        Worker(app, ["default"], concurrency=0)
    with pytest.raises(ConfigurationError, match="lease"):
        Worker(app, ["default"], lease=0)
    with pytest.raises(InvalidName):
        Worker(app, ["bad name"])


STOPPERS: list[Any] = []


class StopsTheWorker(Job):
    def handle(self, payload: Any) -> None:
        worker, app = STOPPERS
        worker.stop()
        time.sleep(0.6)
        RUNS["pending while running"] = app.stats()["pending"]


def test_inline_prefetched_jobs_are_given_back_while_the_running_one_finishes(app: JobsApp) -> None:
    app.dispatch_many(TestJob, range(15))
    app.dispatch(StopsTheWorker)
    app.dispatch_many(TestJob, range(10))
    worker = app.worker(install_signal_handlers=False, poll_interval=0.1)
    STOPPERS[:] = [worker, app]
    worker.run()
    assert RUNS["TestJob"] == 15
    assert RUNS["pending while running"] == 10
    assert worker.stats.released == 10
    assert app.stats() == {"pending": 10, "delayed": 0, "reserved": 0, "completed": 16, "failed": 0}


class Slow(Job):
    def handle(self, payload: Any) -> None:
        time.sleep(payload)


class StealsTheLease:
    """Middleware giving the delivery back mid-run, as if the lease had expired."""

    @hookimpl(wrapper=True)
    def jobs_run_job(self, run: JobRun) -> Generator[None, Any, Any]:
        assert run.delivery is not None
        STOPPERS.append(run.delivery)
        return (yield)


def test_a_lost_lease_is_logged_and_the_job_comes_back(
    app: JobsApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.register_plugin(StealsTheLease())
    STOPPERS.clear()
    app.dispatch(Slow, 0.5)
    thread = threading.Thread(target=app.worker(lease=0.15, max_jobs=1, install_signal_handlers=False).run)
    with caplog.at_level(logging.WARNING, logger="jobs_core.worker"):
        thread.start()
        while not STOPPERS:
            time.sleep(0.01)
        app.driver.release(STOPPERS[0])
        thread.join(10)
    assert "was lost; another worker may run it" in caplog.text
    assert app.stats()["completed"] == 0
    [again] = app.driver.reserve(["default"])
    assert again.id == STOPPERS[0].id and again.message.attempts == 0


def test_retry_raised_on_the_last_attempt_sends_the_job_to_the_failed_store(app: JobsApp) -> None:
    class AlwaysRetry(Job):
        max_retries = 1

        def handle(self, payload: Any) -> None:
            raise Retry(0, "still waiting")

    app.dispatch(AlwaysRetry)
    assert app.work() == 2
    [failed] = app.failed_jobs()
    assert failed.attempts == 2
    assert "Retry: still waiting" in failed.error


class FlakyMemory(MemoryDriver):
    """The memory driver with a backend outage on its first reserves."""

    name = "flaky-memory"
    schemes = ("flaky-memory",)
    outages = 0

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__("memory://", **options)

    def reserve(
        self, queues: Sequence[str], limit: int = 1, lease: float = 30.0, timeout: float = 0.0
    ) -> list[Delivery]:
        if type(self).outages > 0:
            type(self).outages -= 1
            raise BackendUnavailable("database is restarting")
        return super().reserve(queues, limit, lease, timeout)


def test_the_worker_rides_out_a_backend_outage(caplog: pytest.LogCaptureFixture) -> None:
    with JobsApp("memory://") as app:
        app.drivers.register_class(FlakyMemory)
        app.configure("flaky-memory://")
        app.dispatch(TestJob, 1)
        FlakyMemory.outages = 2
        worker = app.worker(max_jobs=1, install_signal_handlers=False, poll_interval=0.1)
        with caplog.at_level(logging.WARNING, logger="jobs_core.worker"):
            assert worker.run() == 1
        assert caplog.text.count("reserving failed, trying again: database is restarting") == 2
        assert app.stats()["completed"] == 1
        FlakyMemory.outages = 1
        with pytest.raises(BackendUnavailable):
            app.work()


def test_a_driver_with_round_trip_acks_has_them_sent_while_the_next_batch_is_claimed(app: JobsApp) -> None:
    driver = app.driver
    assert isinstance(driver, MemoryDriver)
    ack_threads: list[str] = []
    helper_idents: set[int | None] = set()
    ack_results = driver.ack_results  # the worker keeps results: it acks with them

    def recording_ack_results(deliveries: Sequence[Delivery], results: Sequence[str | None]) -> None:
        ack_threads.append(threading.current_thread().name)
        if threading.current_thread().name == "jobs-acks":
            helper_idents.add(threading.get_ident())
        ack_results(deliveries, results)

    driver.ack_in_background = True
    driver.ack_results = recording_ack_results  # type: ignore[method-assign]
    app.dispatch_many(TestJob, [{"n": n} for n in range(300)])
    handled = app.worker(stop_when_empty=True, install_signal_handlers=False).run()
    assert handled == 300 and RUNS["TestJob"] == 300
    assert app.stats() == {"pending": 0, "delayed": 0, "reserved": 0, "completed": 300, "failed": 0}
    assert ack_threads.count("jobs-acks") >= 2  # batches were acknowledged behind the main loop
    assert len(helper_idents) == 1  # by one helper thread, started once
    assert not [t for t in threading.enumerate() if t.name == "jobs-acks"]  # ended with the worker


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class RaisesUnprintable(Job):
    max_retries = 0

    def handle(self, payload: Any) -> None:
        raise Unprintable()


class RaisesAnEssay(Job):
    max_retries = 1
    retry_delay = 0.0

    def handle(self, payload: Any) -> None:
        raise ValueError("start " + "x" * 1_000_000 + " end")


def test_an_exception_that_cannot_be_shown_still_fails_the_job_and_the_worker_goes_on(app: JobsApp) -> None:
    app.dispatch(RaisesUnprintable)
    app.dispatch(TestJob, "behind")
    assert app.work("default") == 2
    [failed] = app.failed_jobs()
    assert failed.name == RaisesUnprintable.job_name
    assert "<unprintable Unprintable>" in failed.error
    assert app.stats()["completed"] == 1


def test_a_huge_error_text_is_clipped_keeping_its_head_and_tail(app: JobsApp) -> None:
    from jobs_core.limits import MAX_ERROR_CHARS

    app.dispatch(RaisesAnEssay)
    assert app.work("default") == 2  # one retry (the clipped error travels with the message), then failed
    [failed] = app.failed_jobs()
    assert len(failed.error) <= MAX_ERROR_CHARS
    assert failed.error.startswith("ValueError: start xxx")
    assert "characters cut" in failed.error
    assert failed.error.rstrip().endswith("end")


FINISHED: list[tuple[str, float]] = []


class Spin(Job):
    def handle(self, payload: Any) -> None:
        end = time.monotonic() + payload["seconds"]
        while time.monotonic() < end:
            pass
        FINISHED.append(("spin", time.monotonic()))


class Quick(Job):
    def handle(self, payload: Any) -> None:
        FINISHED.append(("quick", time.monotonic()))


def test_a_long_job_does_not_hold_up_the_jobs_behind_it_on_a_pooled_worker(app: JobsApp) -> None:
    """Fast jobs that never wait run on one thread; one long job must not stall the rest."""
    FINISHED.clear()
    app.dispatch_many(Quick, range(300))  # fast, CPU-only jobs: the worker learns they never wait
    app.dispatch(Spin, {"seconds": 1.5})
    app.dispatch_many(Quick, range(5))
    worker = app.worker(concurrency=2, stop_when_empty=True, install_signal_handlers=False)
    assert worker.run() == 306
    spin_done = next(at for kind, at in FINISHED if kind == "spin")
    last_quick = max(at for kind, at in FINISHED if kind == "quick")
    assert last_quick < spin_done, "the jobs behind the long one waited for it"
