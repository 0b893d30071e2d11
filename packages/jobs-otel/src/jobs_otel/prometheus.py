"""The Prometheus endpoint: OpenTelemetry's Prometheus reader served over HTTP."""

from __future__ import annotations

import logging
import threading

from jobs_core.errors import ConfigurationError
from opentelemetry import metrics

log = logging.getLogger("jobs_otel")

_lock = threading.Lock()
_serving: tuple[str, int] | None = None


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve this process's metrics at ``http://ADDR:PORT/metrics``; ``False`` if already served.

    Installs an OpenTelemetry ``MeterProvider`` whose reader is the
    Prometheus exporter, as the global one. A process that already set a
    global SDK ``MeterProvider`` gets a
    :class:`~jobs_core.errors.ConfigurationError`: add
    ``opentelemetry.exporter.prometheus.PrometheusMetricReader`` to it
    yourself and serve ``prometheus_client``'s registry instead. Once per
    process; later calls do nothing.
    """
    global _serving
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    with _lock:
        if _serving is not None:
            return False
        if isinstance(metrics.get_meter_provider(), MeterProvider):
            raise ConfigurationError(
                "JOBS_METRICS_PORT is set but this process already has an OpenTelemetry MeterProvider; "
                "add a PrometheusMetricReader to it and serve prometheus_client instead"
            )
        try:
            start_http_server(port, addr)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
        metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
        _serving = (addr, port)
        log.info("jobs_otel: Prometheus metrics at http://%s:%d/metrics", addr, port)
        return True
