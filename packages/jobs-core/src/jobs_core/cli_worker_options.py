"""The options of ``jobs worker``, checked, and passed on to the processes of a supervisor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs_core.errors import ConfigurationError
from jobs_core.worker_health import parse_address, parse_size

__all__ = ["WorkerOptions"]


@dataclass(frozen=True)
class WorkerOptions:
    """The options of ``jobs worker``."""

    url: str | None
    queues: tuple[str, ...]
    concurrency: int = 1
    processes: int = 1
    imports: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    max_jobs: int | None = None
    stop_when_empty: bool = False
    grace: float = 30.0
    lease: float = 30.0
    prefetch: int | None = None
    ack_interval: float = 0.05
    progress_interval: float = 10.0
    log_level: str = "WARNING"
    queue_order: str | None = None
    weights: tuple[str, ...] = ()
    rate_limits: tuple[str, ...] = ()
    log_format: str = "text"
    max_memory: str | None = None
    health_port: str | None = None
    health_file: str | None = None

    def check(self) -> None:
        """Refuse a bad ``--max-memory`` or ``--health-port`` before anything starts."""
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if self.health_port is not None:
            parse_address(self.health_port)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> WorkerOptions:
        """Build from the click parameters of the ``worker`` command (unknown keys ignored)."""
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in params.items() if k in fields}
        values["queues"] = tuple(values.get("queues") or ("default",))
        values["imports"] = tuple(values.get("imports") or ())
        values["plugins"] = tuple(values.get("plugins") or ())
        values["weights"] = tuple(values.get("weights") or ())
        values["rate_limits"] = tuple(values.get("rate_limits") or ())
        return cls(**values)

    def weight_map(self) -> dict[str, int] | None:
        """``--weight QUEUE=N`` values as a dict (``None`` when none was given)."""
        if not self.weights:
            return None
        weights: dict[str, int] = {}
        for text in self.weights:
            name, _, number = text.partition("=")
            try:
                weights[name] = int(number)
            except ValueError:
                raise ConfigurationError(f"--weight takes QUEUE=N, N a whole number; got {text!r}") from None
        return weights

    def child_args(self) -> list[str]:
        """Command-line arguments of one child worker (without ``--url``)."""
        args = ["worker", "--processes", "1", "--concurrency", str(self.concurrency)]
        for queue in self.queues:
            args += ["--queue", queue]
        for module in self.imports:
            args += ["--import", module]
        for plugin in self.plugins:
            args += ["--plugin", plugin]
        if self.max_jobs is not None:
            args += ["--max-jobs", str(self.max_jobs)]
        if self.stop_when_empty:
            args.append("--stop-when-empty")
        args += ["--grace", repr(self.grace), "--lease", repr(self.lease)]
        if self.prefetch is not None:
            args += ["--prefetch", str(self.prefetch)]
        args += ["--ack-interval", repr(self.ack_interval)]
        if self.queue_order is not None:
            args += ["--queue-order", self.queue_order]
        for weight in self.weights:
            args += ["--weight", weight]
        for limit in self.rate_limits:
            args += ["--rate-limit", limit]
        args += ["--progress", repr(self.progress_interval), "--log-level", self.log_level]
        args += ["--log-format", self.log_format]
        if self.max_memory is not None:
            args += ["--max-memory", self.max_memory]
        return args
