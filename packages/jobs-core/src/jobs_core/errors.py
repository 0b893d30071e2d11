"""Every error jobs raises: one base class, one module.

Drivers translate native exceptions (database, broker, network) into these
types at the boundary with ``raise ... from exc``, so callers never need to
import a driver's dependencies to handle a failure. Errors worth trying again
have ``retryable = True``.
"""

from __future__ import annotations

from jobs_core.limits import MAX_SECONDS


class JobsError(Exception):
    """Base class of every error raised by jobs and its drivers."""

    #: Whether the same operation may succeed if tried again later.
    retryable: bool = False


class ConfigurationError(JobsError):
    """The configuration (URL, options, names) is not valid."""


class InvalidURL(ConfigurationError):
    """A connection URL could not be understood."""


class DriverNotFound(ConfigurationError):
    """No installed driver answers to the requested URL scheme or name.

    The message lists the drivers that are installed.
    """


class DriverLoadError(JobsError):
    """A driver plugin failed to import or to register.

    The message names the distribution that provides the plugin, so the other
    drivers keep working and the user knows what to reinstall.
    """


class UnsupportedOperation(JobsError):
    """The driver does not support this operation.

    Raised instead of silently doing nothing; the message names the driver
    and the missing capability.
    """

    def __init__(self, driver: str, capability: str, detail: str = "") -> None:
        self.driver = driver
        self.capability = capability
        message = f"driver {driver!r} does not support {capability}"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message)


class InvalidName(ConfigurationError):
    """A queue, job, schedule or table name is not allowed."""


class SerializationError(JobsError):
    """A payload or message could not be serialized to JSON."""


class PayloadNotJSON(SerializationError, TypeError):
    """A payload holds a value JSON cannot represent.

    ``path`` locates the value (``$.items[2].when``) and ``type_name`` is its type.
    """

    def __init__(self, path: str, type_name: str) -> None:
        self.path = path
        self.type_name = type_name
        super().__init__(
            f"payload is not JSON: value at {path} is of type {type_name}; "
            "use str, int, float, bool, None, list or dict with str keys"
        )


class PayloadOutOfRange(SerializationError, ValueError):
    """A payload is JSON, but beyond what a worker could read back exactly.

    Containers nested deeper than :data:`~jobs_core.limits.MAX_NESTING`, or an
    integer larger than :data:`~jobs_core.limits.MAX_INT_BITS` bits. ``path``
    locates the value.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"payload is out of range: value at {path} {problem}")


class PayloadTooLarge(SerializationError):
    """An encoded message is larger than the driver accepts."""

    def __init__(self, size: int, limit: int, driver: str) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the {limit}-byte limit of driver {driver!r}")


class MalformedMessage(SerializationError):
    """A record read from the backend is not a valid jobs message."""


class JobNotRegistered(JobsError):
    """A message names a job that this process has not registered."""


class DuplicateJobName(ConfigurationError):
    """Two different jobs were registered under the same name."""


class BackendError(JobsError):
    """The backend failed an operation (base of connection and lease errors)."""


class BackendUnavailable(BackendError):
    """The backend (database, broker) could not be reached.

    The message names the host, never the password. Retryable.
    """

    retryable = True


class OperationTimedOut(BackendError):
    """The backend did not answer within the configured time. Retryable."""

    retryable = True


class StorageFull(BackendError):
    """The backend has no room for a write: its disk is full, or it reached a
    size limit (SQLite's ``max_page_count``, a quota). Retryable: the write
    may succeed once space is freed.
    """

    retryable = True


class ReadOnlyBackend(BackendError):
    """The backend refuses writes: a read-only database file, directory or
    mount, or a database opened read-only. Not retryable: its permissions or
    configuration must change first.
    """


class LeaseLost(BackendError):
    """The worker no longer holds the lease of a delivery."""


class DriverClosed(JobsError):
    """The driver was used after :meth:`Driver.close`."""


class JobTimeout(JobsError):
    """A job ran past its timeout and was stopped."""


class NoCurrentJob(JobsError):
    """:func:`~jobs_core.current_job` (or a job's ``job_id`` or ``attempt``) was
    asked for outside a job run by a worker.
    """


class ScheduleError(JobsError):
    """A schedule is not valid (bad cron expression, time zone or interval)."""


class ScheduleNotFound(ScheduleError):
    """No schedule has the given name."""


class Retry(JobsError):
    """Raise from a job or middleware to retry the job after ``delay`` seconds.

    The attempt counts against the job's retries. ``delay`` is ``None`` (the
    job's retry policy decides) or seconds from 0 to
    :data:`~jobs_core.limits.MAX_SECONDS`; anything else (NaN, an infinity, a
    negative number, a bool) raises :class:`ConfigurationError` from the
    constructor, so the attempt fails with that error as its reason instead.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and not _is_seconds(delay):
            raise ConfigurationError(
                f"Retry(delay=...) must be None or a number of seconds from 0 to {MAX_SECONDS:.0f} "
                f"(100 years), got {delay!r}"
            )
        self.delay = delay
        super().__init__(reason)


def _is_seconds(value: object) -> bool:
    """Whether ``value`` is a duration within the limits (not a bool, NaN or an infinity)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= MAX_SECONDS


class SkipJob(JobsError):
    """Raise from middleware (or a job) to finish a job without running it further.

    The message is acknowledged and counted as processed.
    """


class JobNotDispatchedWarning(UserWarning):
    """A job configured with ``delay(seconds)`` was dropped without being dispatched.

    ``delay()`` sets the delay of a later dispatch and queues nothing (unlike
    Celery's ``task.delay(...)``): pass the job to ``Jobs.dispatch``.
    """


class JobNotFound(JobsError, LookupError):
    """No job has this id: never dispatched, or finished longer ago than the
    driver keeps results (``results_ttl``) and pruned.
    """

    def __init__(self, job_id: str, detail: str = "") -> None:
        self.job_id = job_id
        text = f"no job with id {job_id!r}"
        super().__init__(f"{text} ({detail})" if detail else text)


class JobCancelled(JobsError):
    """The job was cancelled with ``Jobs.cancel``.

    Raised inside a running job by ``self.check_cancelled()`` (the worker
    then finishes it as cancelled, never retried), and by ``Jobs.result`` for
    a cancelled job.
    """


class JobFailed(JobsError):
    """``Jobs.result`` of a job that ended in the failed store; ``error`` holds its error."""

    def __init__(self, job_id: str, error: str) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id!r} failed: {error.strip().splitlines()[-1] if error.strip() else ''}")


class ResultTimeout(JobsError, TimeoutError):
    """``Jobs.result`` waited its ``timeout`` and the job had not finished."""


class WorkflowError(ConfigurationError):
    """A chain, batch or dependency is not valid (no steps, a cycle, an unknown
    job, a non-JSON result for the next link), or the operation does not apply
    to the workflow in its current state (adding jobs to a finished batch).

    Raised before anything is stored.
    """


class WorkflowNotFound(WorkflowError):
    """No workflow (batch, chain or tracked job) has the given id."""


class ChildJobError(JobsError):
    """An exception raised by a job that ran in a child process.

    ``type_name`` is the qualified name of the original exception type and
    ``traceback_text`` its formatted traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        self.type_name = type_name
        self.traceback_text = traceback_text
        super().__init__(message)


class ChildDied(JobsError):
    """The child process running a job exited without reporting a result."""
