"""Jobs by state and workers seen recently, for the Redis driver.

:class:`ListingOperations` is a mixin of :class:`~jobs_redis.driver.RedisDriver`
(``Capability.JOB_LISTING`` and ``WORKERS``). ``list_jobs`` is one read-only
script (:mod:`jobs_redis.listing_scripts`) per page: waiting and running jobs
from the queues' sorted sets, succeeded and cancelled ones from the kept
results' per-state indexes, failed ones from the failed store; each entry is
built by the same code as ``job_status`` (:mod:`jobs_redis.status`). Worker
records live in ``{prefix}:wk`` (a sorted set by last write) and
``{prefix}:wkr`` (a hash of their JSON); records not renewed for
``WORKER_EXPIRY`` seconds are deleted by the next write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs_core.message import validate_queue_name
from jobs_core.status import CANCELLED, DELAYED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStatus
from jobs_core.worker_records import WORKER_EXPIRY, WorkerRecord, records_from_json

from jobs_redis.status import failed_status, kept_status, live_record


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class ListingOperations:
    """``list_jobs``, ``save_worker``, ``remove_worker`` and ``workers``, each one script."""

    results_ttl: float

    if TYPE_CHECKING:

        def check_open(self) -> None:
            """Raise if the driver is closed (:meth:`~jobs_core.driver.Driver.check_open`)."""

        def _run(self, script: str, args: Sequence[Any], action: str) -> Any: ...

    def list_jobs(
        self, state: str, queue: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobStatus]:
        """One page read by one script: from the queues, the kept results or the failed store."""
        self.check_open()
        name = "" if queue is None else validate_queue_name(queue)
        limit, offset = int(limit), max(0, int(offset))
        if limit <= 0:
            return []
        action = "listing jobs"
        if state == FAILED:
            reply = self._run("list_failed", [limit, offset, name], action)
            return [failed_status(_text(reply[k]), reply[k + 1 : k + 6]) for k in range(0, len(reply), 6)]
        now = time.time()
        if state in (SUCCEEDED, CANCELLED):
            if self.results_ttl <= 0:
                return []
            reply = self._run("list_kept", [repr(now - self.results_ttl), state, limit, offset, name], action)
            kept = (kept_status(_text(reply[k]), reply[k + 1]) for k in range(0, len(reply), 2))
            return [status for status in kept if status is not None]
        if state not in (QUEUED, DELAYED, RUNNING):
            return []
        queues = [] if queue is None else [name]
        reply = self._run("list_live", [repr(now), state, limit, offset, *queues], action)
        return [live_record(_text(reply[k]), reply[k + 1 : k + 9], now) for k in range(0, len(reply), 9)]

    def save_worker(self, record: WorkerRecord) -> None:
        """Write the record and delete the stale ones, in one script."""
        self.check_open()
        cutoff = repr(time.time() - WORKER_EXPIRY)
        args = [record.id, repr(float(record.last_seen)), json.dumps(record.to_dict()), cutoff]
        self._run("save_worker", args, "recording a worker")

    def remove_worker(self, worker_id: str) -> bool:
        """Delete the worker's record (one script)."""
        self.check_open()
        return bool(self._run("remove_worker", [worker_id], "removing a worker"))

    def workers(self) -> list[WorkerRecord]:
        """The records written within ``WORKER_EXPIRY`` seconds, oldest worker first."""
        self.check_open()
        return records_from_json(self._run("workers", [repr(time.time() - WORKER_EXPIRY)], "listing workers"))
