"""jobs: background jobs for Python on any backend.

The public API lives here; drivers plug in through :class:`DriverSpec`.
"""

from __future__ import annotations

from jobs_core.app import JobsApp
from jobs_core.context import JobContext, current_job
from jobs_core.driver import Capability, Driver
from jobs_core.errors import JobsError, Retry, SkipJob, UnsupportedOperation
from jobs_core.events import JobEvent
from jobs_core.facade import Jobs
from jobs_core.hookspecs import DriverSpec, hookimpl
from jobs_core.job import Job, JobFunction, job
from jobs_core.message import Delivery, FailedJob, Message, QueueStats, RetryPolicy, ScheduleRecord
from jobs_core.middleware import LoggingMiddleware
from jobs_core.registry import Registry
from jobs_core.run import JobRun
from jobs_core.schedule import Missed
from jobs_core.scheduler import Schedule, Scheduler
from jobs_core.status import JobStatus, Progress
from jobs_core.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Capability",
    "Delivery",
    "Driver",
    "DriverSpec",
    "FailedJob",
    "Job",
    "JobContext",
    "JobEvent",
    "JobFunction",
    "JobRun",
    "JobStatus",
    "Jobs",
    "JobsApp",
    "JobsError",
    "LoggingMiddleware",
    "Message",
    "Missed",
    "Progress",
    "QueueStats",
    "Registry",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "ScheduleRecord",
    "Scheduler",
    "SkipJob",
    "UnsupportedOperation",
    "Worker",
    "__version__",
    "current_job",
    "hookimpl",
    "job",
]
