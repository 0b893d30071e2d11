"""Drain throughput with jobs-otel active against without: ``python benchmarks/telemetry.py``.

Each round queues ``--jobs`` no-op jobs and drains them with one worker
(concurrency 1, in this process), once on an app without the plugin and
once on an app with :class:`jobs_otel.TelemetryPlugin` recording: an SDK
tracer provider whose batch processor hands every span to an exporter that
drops it, and an SDK meter provider read by a Prometheus reader (as
``JOBS_METRICS_PORT`` sets up). The rounds alternate so that both see the
same machine; the medians are printed as a Markdown table, the changes as
the median of each round's ratio to the round's drain without the plugin,
with the process's CPU time per drained job (the steadiest figure on a busy
machine).

    python benchmarks/telemetry.py --backend sqlite --jobs 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs_core import job
from jobs_core.app import JobsApp
from jobs_otel import TelemetryPlugin
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider


@job(name="bench.telemetry_noop")
def noop(payload: Any) -> None:
    """Does nothing, or blocks for ``payload`` seconds."""
    if payload:
        time.sleep(payload)


class DroppingExporter(SpanExporter):
    """Counts the spans it is given and keeps none."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def drain(app: JobsApp, jobs: int, work: float = 0.0) -> tuple[float, float, float]:
    """Queue ``jobs`` jobs, drain them; (drain jobs/s, dispatch jobs/s, CPU µs per drained job)."""
    started = time.perf_counter()
    for start in range(0, jobs, 1000):
        app.dispatch_many(noop, [work] * (min(jobs, start + 1000) - start))
    queued = time.perf_counter()
    cpu = time.process_time()
    handled = app.worker("default", stop_when_empty=True, install_signal_handlers=False).run()
    drained = time.perf_counter()
    cpu = time.process_time() - cpu
    assert handled == jobs, f"drained {handled} of {jobs} jobs"
    return jobs / (drained - queued), jobs / (queued - started), cpu / jobs * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--work-ms", type=float, default=0.0, help="milliseconds each job blocks (default: none)"
    )
    args = parser.parse_args(argv)

    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    telemetry = TelemetryPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)

    work = args.work_ms / 1000
    installed = TelemetryPlugin(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    setups: dict[str, list[object]] = {
        "without jobs-otel": [],
        "installed, no OpenTelemetry SDK set up": [installed],
        "active: SDK traces and Prometheus metrics": [telemetry],
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'telemetry-bench.db'}" if args.backend == "sqlite" else "memory://"
        apps = {name: JobsApp(url, load_plugins=False, plugins=plugins) for name, plugins in setups.items()}
        for app in apps.values():
            drain(app, 200)  # warm up: schema, imports
        for _ in range(args.rounds):
            for name, app in apps.items():
                results[name].append(drain(app, args.jobs, work))
        for app in apps.values():
            app.close()
    tracer_provider.force_flush()

    assert exporter.count >= 2 * args.jobs * args.rounds, "the spans were not recorded"
    without = results["without jobs-otel"]
    kind = f"jobs of {args.work_ms:g} ms" if work else "no-op jobs"
    print(f"{args.backend}, {args.jobs} {kind}, median of {args.rounds} rounds, concurrency 1\n")
    print(
        "| | drain (jobs/s) | vs without (paired) | worker CPU per job (µs) "
        "| dispatch_many (jobs/s) | vs without (paired) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        dispatch = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        # Each round's ratio against the round's own drain without the plugin: steadier under load.
        change = statistics.median(r[0] / b[0] for r, b in zip(runs, without, strict=True)) - 1
        dispatch_change = statistics.median(r[1] / b[1] for r, b in zip(runs, without, strict=True)) - 1
        print(
            f"| {name} | {rate:,.0f} | {change:+.1%} | {cpu:.0f} | {dispatch:,.0f} | {dispatch_change:+.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
