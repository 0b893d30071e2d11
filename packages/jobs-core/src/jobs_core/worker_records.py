"""Workers seen recently: :class:`WorkerRecord` and the :class:`WorkerBeacon` that writes it.

A worker whose driver has ``Capability.WORKERS`` records itself in the
backend when it starts and every :data:`BEACON_INTERVAL` seconds after, from
a thread of its own (never from the loop that runs jobs), and removes its
record when it stops cleanly. A record not renewed for :data:`WORKER_EXPIRY`
seconds (a worker killed without warning) is no longer listed, and the driver
deletes it. ``Jobs.workers()`` and ``jobs workers`` list the records.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs_core.quiet_threads import quiet

if TYPE_CHECKING:
    from jobs_core.driver import Driver

log = logging.getLogger("jobs_core.worker")

#: Seconds between two writes of a worker's record.
BEACON_INTERVAL = 5.0
#: Seconds after its last write when a worker's record is stale: not listed, and deleted.
WORKER_EXPIRY = 30.0


@dataclass(frozen=True)
class WorkerRecord:
    """One worker process as it last recorded itself.

    ``id`` is unique per running :class:`~jobs_core.worker.Worker`; ``name``
    (``host:pid``) is what ``Jobs.status`` shows as the ``worker`` of the jobs
    it runs. ``processed`` and ``failed`` count the jobs it finished and sent
    to the failed store since ``started_at``; ``last_seen`` is when it last
    wrote this record (Unix seconds).
    """

    id: str
    name: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float
    processed: int = 0
    failed: int = 0
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``jobs workers --json``, and what drivers store)."""
        return {
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "processed": self.processed,
            "failed": self.failed,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Any) -> WorkerRecord | None:
        """The record in ``data`` (as :meth:`to_dict` wrote it), or ``None`` if it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                id=str(data["id"]),
                name=str(data.get("name") or ""),
                hostname=str(data.get("hostname") or ""),
                pid=int(data.get("pid") or 0),
                queues=tuple(str(q) for q in data.get("queues") or ()),
                concurrency=int(data.get("concurrency") or 0),
                started_at=float(data.get("started_at") or 0.0),
                last_seen=float(data["last_seen"]),
                processed=int(data.get("processed") or 0),
                failed=int(data.get("failed") or 0),
                version=str(data.get("version") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None


def records_from_json(texts: Iterable[str | bytes]) -> list[WorkerRecord]:
    """The records stored as JSON texts of :meth:`WorkerRecord.to_dict`, oldest worker first.

    Sorted by ``started_at``, then ``id`` (what ``Driver.workers`` answers); a
    text that is not a record is skipped.
    """
    found = []
    for text in texts:
        try:
            record = WorkerRecord.from_dict(json.loads(text))
        except ValueError:
            record = None
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: (r.started_at, r.id))


def new_worker_id(name: str) -> str:
    """A worker id: its ``host:pid`` name and a random part (several workers may share a process)."""
    return f"{name}:{uuid.uuid4().hex[:8]}"


class WorkerBeacon:
    """Records a worker in its driver every ``interval`` seconds until stopped, then removes it.

    A :class:`~jobs_core.worker_core.Service`: ``start(stop_event)`` starts its
    thread; once ``stop_event`` is set the record is removed. ``counts()``
    gives the worker's ``(processed, failed)`` counters when a record is
    written; ``version`` defaults to jobs-core's. A failed write is
    logged and tried again at the next interval; it never stops the worker.
    """

    def __init__(
        self,
        driver: Driver,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        counts: Callable[[], tuple[int, int]],
        *,
        interval: float = BEACON_INTERVAL,
        version: str | None = None,
    ) -> None:
        self.driver = driver
        self.interval = interval
        self.counts = counts
        self.id = new_worker_id(name)
        self.name = name
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.version = version
        self.started_at = time.time()
        self.thread: threading.Thread | None = None

    def record(self) -> WorkerRecord:
        """The record as of now."""
        processed, failed = self.counts()
        return WorkerRecord(
            id=self.id,
            name=self.name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            started_at=self.started_at,
            last_seen=time.time(),
            processed=processed,
            failed=failed,
            version=self.version or "",
        )

    def start(self, stop_event: threading.Event) -> None:
        """Write the first record (here, so that the worker is listed before it runs a job)
        and start the thread that renews it.
        """
        if self.version is None:
            from jobs_core import __version__  # at run time: the package is imported by then

            self.version = __version__
        self._save()
        self.thread = threading.Thread(
            target=quiet(self._run), args=(stop_event,), name="jobs-beacon", daemon=True
        )
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (it removes the record once stopped)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _save(self) -> None:
        try:
            self.driver.save_worker(self.record())
        except Exception as exc:  # the backend may be down for a while
            log.warning("could not record worker %s: %s", self.id, exc)

    def _run(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self.interval):
            self._save()
        try:
            self.driver.remove_worker(self.id)
        except Exception as exc:
            log.warning("could not remove the record of worker %s: %s", self.id, exc)
