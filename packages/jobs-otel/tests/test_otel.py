"""jobs-otel: one trace from dispatch to a worker process, metrics, the Prometheus endpoint."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import jobs_otel
import pytest
from jobs_core import JobsApp
from jobs_core.errors import ConfigurationError
from jobs_core.message import Message
from jobs_otel import TelemetryPlugin, TelemetrySettings
from jobs_otel_test_jobs import SPANS_ENV, Boom, Traced
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

HERE = pathlib.Path(__file__).parent


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("JOBS_METRICS_PORT", "JOBS_METRICS_ADDR", "JOBS_METRICS_STATS_INTERVAL", "JOBS_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


WORKER = (sys.executable, "-m", "jobs_core", "worker", "--import", "jobs_otel_test_jobs")


def worker_command(url: str, *args: str) -> list[str]:
    return [*WORKER, "--url", url, *args]


@pytest.fixture
def sqlite_url(tmp_path: pathlib.Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_dispatch_and_its_run_in_a_worker_process_form_one_trace(
    sqlite_url: str, tmp_path: pathlib.Path, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    telemetry = TelemetryPlugin(tracer_provider=provider)
    tracer = provider.get_tracer("test")
    with (
        JobsApp(sqlite_url, load_plugins=False, plugins=[telemetry]) as app,
        tracer.start_as_current_span("checkout request") as request,
    ):
        job_id = app.dispatch(Traced, {"order": 7})
    spans_file = tmp_path / "worker-spans.jsonl"
    subprocess.run(
        worker_command(sqlite_url, "--plugin", "jobs_otel_test_jobs:configure_tracing", "--max-jobs", "1"),
        env=worker_env(**{SPANS_ENV: str(spans_file)}),
        check=True,
        timeout=120,
        capture_output=True,
    )

    local = {span.name: span for span in exporter.get_finished_spans()}
    send = local[f"send {Traced.job_name}"]
    assert send.kind.name == "PRODUCER"
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None and send.attributes["messaging.message.id"] == job_id
    assert send.attributes["jobs.stored"] is True

    remote = {span["name"]: span for span in map(json.loads, spans_file.read_text().splitlines())}
    process = remote[f"process {Traced.job_name}"]
    inside = remote["inside the job"]
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert process["kind"] == "CONSUMER"
    assert process["trace_id"] == trace_id == inside["trace_id"]
    assert process["parent_id"] == f"{send.get_span_context().span_id:016x}"
    assert inside["parent_id"] == process["span_id"]
    assert process["attributes"]["messaging.message.id"] == job_id
    assert process["status"] == "UNSET"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (
            sample.name,
            frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope")),
        ): (sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_running_worker_serves_its_job_metrics_to_prometheus(sqlite_url: str) -> None:
    with JobsApp(sqlite_url, load_plugins=False) as app:
        app.dispatch_many(Traced, [1, 2, 3])
        app.dispatch(Boom, None)
    port = free_port()
    env = worker_env(
        JOBS_METRICS_PORT=str(port), JOBS_METRICS_ADDR="127.0.0.1", JOBS_METRICS_STATS_INTERVAL="0"
    )
    worker = subprocess.Popen(
        worker_command(sqlite_url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    traced = {("job", Traced.job_name), ("queue", "default")}
    boom = {("job", Boom.job_name), ("queue", "default")}

    def finished() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited: {worker.stderr.read() if worker.stderr else ''}")
        try:
            samples = scrape(port)
        except OSError:
            return None
        done = samples.get(("jobs_succeeded_total", frozenset(traced))) == 3
        dead = samples.get(("jobs_dead_total", frozenset(boom))) == 1
        return samples if done and dead else None

    try:
        samples = wait_for(finished, what="the worker's metrics to show the 4 jobs")
        assert samples[("jobs_started_total", frozenset(traced))] == 3
        assert samples[("jobs_failed_total", frozenset({*boom, ("will_retry", "false")}))] == 1
        count = samples[("jobs_duration_seconds_count", frozenset({*traced, ("outcome", "succeeded")}))]
        assert count == 3
        assert samples[("jobs_queue_depth", frozenset({("queue", "default"), ("state", "pending")}))] == 0
        assert samples[("jobs_queue_depth", frozenset({("queue", "default"), ("state", "failed")}))] == 1
        assert ("jobs_queue_lag_seconds", frozenset({("queue", "default")})) in samples
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def metric_points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (metric.name, frozenset((point.attributes or {}).items())): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


def test_counters_histogram_and_throttled_depth_in_process() -> None:
    reader = InMemoryMetricReader()
    telemetry = TelemetryPlugin(
        meter_provider=MeterProvider(metric_readers=[reader]), settings=TelemetrySettings(stats_interval=3600)
    )
    with JobsApp("memory://", load_plugins=False, plugins=[telemetry]) as app:
        app.dispatch_many(Traced, [1, 2])
        app.dispatch(Boom().retries(1).retry_after(0), None)
        worker = app.worker("default", stop_when_empty=True, install_signal_handlers=False)
        assert worker.run() == 4
        calls = []
        read = worker.driver.stats_by_queue
        worker.driver.stats_by_queue = lambda queues=None: calls.append(queues) or read(queues)  # type: ignore[method-assign]
        app.dispatch(Traced, 3)
        first = metric_points(reader)
        app.dispatch(Traced, 4)
        second = metric_points(reader)
    traced = {("job", Traced.job_name), ("queue", "default")}
    boom = {("job", Boom.job_name), ("queue", "default")}
    assert first[("jobs.enqueued", frozenset(traced))].value == 3
    assert first[("jobs.succeeded", frozenset(traced))].value == 2
    assert first[("jobs.started", frozenset(boom))].value == 2
    assert first[("jobs.retried", frozenset(boom))].value == 1
    assert first[("jobs.dead", frozenset(boom))].value == 1
    assert first[("jobs.duration", frozenset({*boom, ("outcome", "failed")}))].count == 2
    # The depth gauge reads the driver at most once per stats_interval: the second collection reuses it.
    assert calls == [["default"]]
    pending = ("jobs.queue.depth", frozenset({("queue", "default"), ("state", "pending")}))
    assert first[pending].value == second[pending].value == 1


def test_installed_but_unconfigured_it_changes_nothing() -> None:
    seen: list[Message] = []
    with JobsApp("memory://") as app:
        assert jobs_otel.plugin in app.plugin_manager.get_plugins()
        app.listen("job.processing", lambda event: seen.append(event.message))
        app.dispatch(Traced, {"n": 1})
        app.dispatch(Boom, None)
        assert app.work() == 2
        assert app.stats()["failed"] == 1
    assert [dict(message.headers) for message in seen] == [{}, {}]


def test_the_run_hooks_are_registered_only_once_telemetry_is_configured() -> None:
    from jobs_core.middleware import has_middleware
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    unconfigured = TelemetryPlugin(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    with JobsApp("memory://", load_plugins=False, plugins=[unconfigured]) as app:
        app.dispatch(Traced, {"n": 1})
        assert app.work() == 1
        assert not has_middleware(app.plugin_manager)  # async jobs stay on the worker's event loop
        assert not app.plugin_manager.hook.jobs_job_processed.get_hookimpls()

    reader = InMemoryMetricReader()
    configured = TelemetryPlugin(meter_provider=MeterProvider(metric_readers=[reader]))
    with JobsApp("memory://", load_plugins=False, plugins=[configured]) as app:
        app.dispatch(Traced, {"n": 1})
        assert app.work() == 1
        assert has_middleware(app.plugin_manager)
        assert app.work() == 0  # a second run registers nothing twice
    durations = [key for key in metric_points(reader) if key[0] == "jobs.duration"]
    assert durations, "the configured plugin recorded no run"


def test_settings_come_from_the_environment_and_bad_values_are_named() -> None:
    settings = TelemetrySettings.from_env({"JOBS_METRICS_PORT": "9100", "JOBS_METRICS_STATS_INTERVAL": "2.5"})
    assert settings == TelemetrySettings(metrics_port=9100, metrics_addr="0.0.0.0", stats_interval=2.5)
    assert TelemetrySettings.from_env({}).metrics_port is None
    with pytest.raises(ConfigurationError, match="JOBS_METRICS_PORT must be a port number, got 'http'"):
        TelemetrySettings.from_env({"JOBS_METRICS_PORT": "http"})
    with pytest.raises(ConfigurationError, match="JOBS_METRICS_STATS_INTERVAL"):
        TelemetrySettings.from_env({"JOBS_METRICS_STATS_INTERVAL": "soon"})
    with pytest.raises(ConfigurationError, match=r"metrics port must be 0\.\.65535"):
        TelemetrySettings(metrics_port=70000)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_a_failed_run_marks_its_span_and_the_job_fails_as_without_the_plugin(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from jobs_core import Job

    class Raises(Job):
        job_name = "otel-test.raises"
        max_retries = 0

        def handle(self, payload: Any) -> None:
            raise Unprintable() if payload else RuntimeError("card declined")

    provider, exporter = traced
    with JobsApp("memory://", load_plugins=False, plugins=[TelemetryPlugin(tracer_provider=provider)]) as app:
        app.dispatch_many(Raises, [0, 1])
        assert app.work() == 2
        errors = sorted(failed.error.splitlines()[0] for failed in app.failed_jobs())
    assert errors == ["RuntimeError: card declined", "test_otel.Unprintable: <unprintable Unprintable>"]
    runs = [span for span in exporter.get_finished_spans() if span.name == "process otel-test.raises"]
    assert sorted(span.status.description or "" for span in runs) == [
        "RuntimeError: card declined",
        "Unprintable: <unprintable>",
    ]
    assert all(span.status.status_code.name == "ERROR" for span in runs)
    assert all(span.attributes is not None and span.attributes["jobs.outcome"] == "failed" for span in runs)
