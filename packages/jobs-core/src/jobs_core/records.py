"""What drivers report and keep beside the jobs: queue counts and schedule records."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue, or for all queues.

    ``completed`` is ``None`` when the driver keeps no record of finished jobs.
    """

    pending: int = 0
    delayed: int = 0
    reserved: int = 0
    completed: int | None = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int | None]:
        """A plain mapping with the five counts."""
        return dataclasses.asdict(self)

    def __add__(self, other: QueueStats) -> QueueStats:
        completed = (
            None if self.completed is None or other.completed is None else self.completed + other.completed
        )
        return QueueStats(
            pending=self.pending + other.pending,
            delayed=self.delayed + other.delayed,
            reserved=self.reserved + other.reserved,
            completed=completed,
            failed=self.failed + other.failed,
        )


@dataclass(frozen=True)
class ScheduleRecord:
    """A persisted schedule, as drivers store it.

    Drivers treat ``data`` as opaque JSON owned by the scheduler; they index
    ``name`` (unique), ``next_run_at`` and ``paused``, and keep ``last_tick``
    (the latest tick claimed) for :meth:`~jobs_core.driver.Driver.claim_tick`.
    """

    name: str
    data: Mapping[str, Any]
    next_run_at: float | None = None
    paused: bool = False
    last_tick: float | None = None
    updated_at: float = field(default_factory=time.time)
