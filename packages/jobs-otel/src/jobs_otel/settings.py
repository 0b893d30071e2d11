"""The plugin's settings, from ``JOBS_METRICS_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from jobs_core.errors import ConfigurationError

#: Port of the Prometheus endpoint a worker process serves (unset: none).
ENV_PORT = "JOBS_METRICS_PORT"
#: Address the endpoint binds (default ``0.0.0.0``, every interface).
ENV_ADDR = "JOBS_METRICS_ADDR"
#: Seconds between two reads of the driver's queue counts for the gauges.
ENV_STATS_INTERVAL = "JOBS_METRICS_STATS_INTERVAL"


@dataclass(frozen=True)
class TelemetrySettings:
    """Where a worker serves Prometheus metrics, and how often the gauges read the queues.

    ``metrics_port`` ``None`` serves no endpoint; ``stats_interval`` bounds
    the driver's ``stats`` calls made for the queue-depth gauge.
    """

    metrics_port: int | None = None
    metrics_addr: str = "0.0.0.0"
    stats_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(f"metrics port must be 0..65535, got {self.metrics_port}")
        if not self.stats_interval >= 0:
            raise ConfigurationError(f"stats interval must be >= 0 seconds, got {self.stats_interval}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        """Settings from ``JOBS_METRICS_PORT``, ``JOBS_METRICS_ADDR`` and ``JOBS_METRICS_STATS_INTERVAL``.

        A value that is not a number raises
        :class:`~jobs_core.errors.ConfigurationError` naming the variable.
        """
        env = os.environ if environ is None else environ
        port = env.get(ENV_PORT, "").strip()
        interval = env.get(ENV_STATS_INTERVAL, "").strip()
        try:
            metrics_port = int(port) if port else None
        except ValueError:
            raise ConfigurationError(f"{ENV_PORT} must be a port number, got {port!r}") from None
        try:
            stats_interval = float(interval) if interval else cls.stats_interval
        except ValueError:
            raise ConfigurationError(
                f"{ENV_STATS_INTERVAL} must be a number of seconds, got {interval!r}"
            ) from None
        return cls(
            metrics_port=metrics_port,
            metrics_addr=env.get(ENV_ADDR, "").strip() or cls.metrics_addr,
            stats_interval=stats_interval,
        )
