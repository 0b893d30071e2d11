"""jobs: background jobs for Python on any backend.

The public API lives here; drivers plug in through :class:`DriverSpec`.
"""

from __future__ import annotations

from jobs_core.driver import Capability, Driver
from jobs_core.errors import JobsError, Retry, SkipJob, UnsupportedOperation
from jobs_core.hookspecs import DriverSpec, hookimpl
from jobs_core.job import Job, JobFunction, job
from jobs_core.message import Delivery, FailedJob, Message, QueueStats, RetryPolicy, ScheduleRecord
from jobs_core.registry import Registry
from jobs_core.run import JobRun

__version__ = "0.1.0"

__all__ = [
    "Capability",
    "Delivery",
    "Driver",
    "DriverSpec",
    "FailedJob",
    "Job",
    "JobFunction",
    "JobRun",
    "JobsError",
    "Message",
    "QueueStats",
    "Registry",
    "Retry",
    "RetryPolicy",
    "ScheduleRecord",
    "SkipJob",
    "UnsupportedOperation",
    "__version__",
    "hookimpl",
    "job",
]
