"""The context of one job run, as middleware sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs_core.job import Job
from jobs_core.message import Delivery, Message


@dataclass
class JobRun:
    """One attempt at running a job.

    Middleware (the ``jobs_run_job`` hook) may replace ``payload`` before the
    job runs and may use ``state`` to pass data between its own hooks.
    ``attempt`` is 1 for the first run.
    """

    message: Message
    job: Job
    payload: Any
    delivery: Delivery | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        """1-based number of this attempt."""
        return self.message.attempts + 1

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now sends the job to the failed store."""
        return self.message.attempts >= self.message.max_retries
