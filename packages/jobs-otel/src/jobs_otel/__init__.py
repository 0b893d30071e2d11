"""OpenTelemetry traces and metrics for jobs, and a Prometheus endpoint for its workers.

Installed, the package registers :data:`plugin` in every app (entry-point
group ``jobs.plugins``): a span per enqueue and per run, the trace context
carried in the message headers, and the ``jobs.*`` metrics. Set
``JOBS_METRICS_PORT`` for a worker to serve them to Prometheus.
"""

from __future__ import annotations

from jobs_otel.plugin import SCOPE, TelemetryPlugin
from jobs_otel.prometheus import start_metrics_server
from jobs_otel.settings import TelemetrySettings

__version__ = "0.1.0"

#: The instance the ``jobs.plugins`` entry point registers in every app.
plugin = TelemetryPlugin()

__all__ = ["SCOPE", "TelemetryPlugin", "TelemetrySettings", "__version__", "plugin", "start_metrics_server"]
