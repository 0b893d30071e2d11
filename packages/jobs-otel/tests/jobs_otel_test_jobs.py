"""Jobs and tracing set-up shared by the tests and the ``jobs worker`` processes they start.

``configure_tracing`` is given to ``jobs worker --plugin``: it installs a
tracer provider that appends each finished span, as one JSON line, to the
file named by ``$JOBS_OTEL_TEST_SPANS``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from jobs_core import Job, JobsApp
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

SPANS_ENV = "JOBS_OTEL_TEST_SPANS"


class Traced(Job):
    job_name = "otel-test.traced"

    def handle(self, payload: Any) -> Any:
        with trace.get_tracer("otel-test").start_as_current_span("inside the job"):
            return payload


class Boom(Job):
    job_name = "otel-test.boom"
    max_retries = 0

    def handle(self, payload: Any) -> Any:
        raise RuntimeError("boom")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The ids, name and kind of a finished span, as JSON values."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


class JsonLinesExporter(SpanExporter):
    """Appends one JSON line per span to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


def configure_tracing(app: JobsApp) -> None:
    """``jobs worker --plugin``: export this process's spans to ``$JOBS_OTEL_TEST_SPANS``."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[SPANS_ENV])))
    trace.set_tracer_provider(provider)
