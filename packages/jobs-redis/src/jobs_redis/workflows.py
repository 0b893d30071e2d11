"""Workflows on Redis: a transaction that locks the records it reads and commits in one script.

The pure functions of :mod:`jobs_core.workflow_state` decide what a
transaction writes; they need a :class:`~jobs_core.workflow_state.WorkflowStore`
whose ``load`` locks the record until the end. Redis has no row lock and a
Lua script cannot call back into Python, so :class:`Transaction`:

* locks each record it loads with ``SET {p}:wfl:<id> <token> NX PX``
  (waiting while another transaction holds it; the lock's expiry frees it if
  that process dies), then reads it;
* keeps every write aside (records, jobs to store, failed entries, waiting
  jobs to remove, with the member each was seen with);
* commits with :data:`~jobs_redis.workflow_scripts.COMMIT`, which checks the
  locks, the job being finished (still held by the receipt) and the jobs
  being removed (unchanged) before writing anything, then writes it all.

``WATCH``/``MULTI`` would also be atomic, but a Cluster pipeline cannot
``WATCH``, and an optimistic transaction that loses a race must run the
caller's block again, which a context manager cannot do; the lock makes a
second transaction on the same record wait instead, as ``SELECT ... FOR
UPDATE`` does on the databases.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from jobs_core import serializer
from jobs_core.errors import MalformedMessage, OperationTimedOut, WorkflowError
from jobs_core.message import Message
from jobs_core.workflow_state import MEMBER, WATCHED, WORKFLOW_HEADER, WorkflowRecord

#: Milliseconds a record lock holds if its transaction never ends (its process died).
LOCK_MS = 10_000
#: Seconds a transaction waits for a record another one holds before giving up.
LOCK_WAIT = 15.0


class Conflict(Exception):
    """The commit found something changed (``COMMIT``'s answer); the caller may run it again."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


def record_json(record: WorkflowRecord) -> str:
    """The record as the JSON text kept in ``{p}:wf:<id>``."""
    return serializer.dumps(
        {
            "id": record.id,
            "kind": record.kind,
            "status": record.status,
            "total": record.total,
            "succeeded": record.succeeded,
            "failed": record.failed,
            "cancelled": record.cancelled,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
            "state": record.state,
        }
    )


def parse_record(text: bytes | str) -> WorkflowRecord:
    """The record kept as :func:`record_json` wrote it."""
    data = serializer.loads(text)
    if not isinstance(data, dict):
        raise WorkflowError(f"workflow record is not a JSON object: {text!r:.80}")
    finished = data.get("finished_at")
    return WorkflowRecord(
        id=str(data["id"]),
        kind=str(data["kind"]),
        status=str(data["status"]),
        total=int(data["total"]),
        succeeded=int(data.get("succeeded", 0)),
        failed=int(data.get("failed", 0)),
        cancelled=int(data.get("cancelled", 0)),
        created_at=float(data.get("created_at", 0.0)),
        finished_at=None if finished is None else float(finished),
        state=dict(data.get("state") or {}),
    )


class Transaction:
    """A :class:`~jobs_core.workflow_state.WorkflowStore` over Redis, committed by :meth:`commit`.

    ``client`` is the driver's redis-py client, ``base`` its key start,
    ``validate`` its message check, ``fields`` its per-message enqueue
    fields (queue, priority, due, unique key, unique expiry, ordering key,
    key concurrency), ``lock(id, token)`` takes a record's lock if it is
    free and reads the record in the same script: ``(taken, record JSON)``,
    and ``watch(job id, token, mark)`` runs
    :data:`~jobs_redis.workflow_scripts.WATCH`, ``ended(job id, kept record,
    failed_at)`` says how a job no longer stored ended.
    """

    def __init__(
        self,
        client: Any,
        base: str,
        validate: Callable[[Sequence[Message]], list[bytes]],
        fields: Callable[[Message, float], tuple[Any, ...]],
        lock: Callable[[str, str], tuple[bool, bytes | None]],
        *,
        watch: Callable[[str, str, bool], list[Any]],
        ended: Callable[[str, bytes | None, bytes | None], str | None],
    ) -> None:
        self._client = client
        self._watch = watch
        self._ended = ended
        self._try_lock = lock
        self._base = base
        self._validate = validate
        self._fields = fields
        self.token = uuid.uuid4().hex
        self.locked: list[str] = []
        self._records: dict[str, WorkflowRecord | None] = {}
        self._saved: dict[str, WorkflowRecord] = {}
        self._enqueued: list[tuple[Message, bytes]] = []
        self._failed: list[tuple[Message, str]] = []
        self._removed: dict[str, bytes] = {}

    def _lock(self, workflow_id: str) -> bytes | None:
        """Take the record's lock (waiting while another transaction holds it); return its JSON."""
        deadline = time.monotonic() + LOCK_WAIT
        pause = 0.001
        while True:
            taken, raw = self._try_lock(workflow_id, self.token)
            if taken:
                self.locked.append(workflow_id)
                return raw
            if time.monotonic() > deadline:
                raise OperationTimedOut(
                    f"workflow {workflow_id!r} stayed locked by another transaction for {LOCK_WAIT:g}s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def load(self, workflow_id: str) -> WorkflowRecord | None:
        """The record, locked until the commit (a private copy)."""
        if workflow_id in self._saved:
            return self._saved[workflow_id]
        if workflow_id not in self._records:
            raw = self._lock(workflow_id)
            self._records[workflow_id] = None if raw is None else parse_record(raw)
        record = self._records[workflow_id]
        if record is not None:
            self._saved[workflow_id] = record
        return record

    def save(self, record: WorkflowRecord) -> None:
        """Keep ``record`` for the commit."""
        self._saved[record.id] = record

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Check ``messages`` now (as ``enqueue`` does); store them at the commit."""
        self._enqueued.extend(zip(messages, self._validate(messages), strict=True))

    def fail(self, message: Message, error: str) -> None:
        """Put ``message`` in the failed store at the commit."""
        self._failed.append((message, error))

    def watch(self, job_id: str) -> str | None:
        """Mark the stored job ``job_id`` watched, or say how it ended (``WorkflowStore.watch``).

        The job's record id is locked first (the lock the record of the watch
        is saved under), so an ack that finds the mark waits for this
        transaction before counting the job; the mark is set at once and
        cleared again if the transaction does not commit.
        """
        if job_id not in self._records and job_id not in self._saved:
            self.load(job_id)
        reply = self._watch(job_id, self.token, False)
        if reply[0] == 1:
            try:
                headers = Message.decode(reply[1]).headers
            except MalformedMessage:
                headers = {}
            if WORKFLOW_HEADER in headers:
                return MEMBER
            reply = self._watch(job_id, self.token, True)
            if reply[0] == 2:
                return WATCHED
        return self._ended(job_id, reply[1], reply[2])

    def remove_waiting(self, workflow_id: str) -> list[str]:
        """The waiting jobs the workflow stored, removed at the commit if still unchanged."""
        ids = sorted(m.decode() for m in self._client.smembers(f"{self._base}wf:{workflow_id}:j"))
        pipe = self._client.pipeline(transaction=False)
        for ident in ids:
            pipe.hmget(f"{self._base}j:{ident}", "s", "m", "b", "e")
        rows = pipe.execute() if ids else []
        now = time.time()
        removed = []
        for ident, (state, member, body, lease_end) in zip(ids, rows, strict=True):
            waiting = state == b"w" or (state == b"r" and float(lease_end or 0) <= now)
            if not waiting or ident in self._removed:
                continue
            try:
                headers = Message.decode(body).headers
            except MalformedMessage:
                continue
            if headers.get(WORKFLOW_HEADER) == workflow_id:
                self._removed[ident] = member
                removed.append(ident)
        mine = [m for m, _ in self._enqueued if m.headers.get(WORKFLOW_HEADER) == workflow_id]
        self._enqueued = [(m, b) for m, b in self._enqueued if m.headers.get(WORKFLOW_HEADER) != workflow_id]
        return removed + [m.id for m in mine]

    def sections(self, now: float) -> list[Any]:
        """The ``COMMIT`` arguments after the action's fields."""
        args: list[Any] = [len(self.locked), *self.locked, len(self._removed)]
        for ident, member in self._removed.items():
            args += [ident, member]
        args.append(len(self._saved))
        for record in self._saved.values():
            finished = "" if record.finished_at is None else repr(record.finished_at)
            args += [record.id, record_json(record), repr(record.created_at), record.kind, finished]
        args.append(len(self._enqueued))
        for message, body in self._enqueued:
            args += [message.id, body, *self._fields(message, now)]
            args.append(message.headers.get(WORKFLOW_HEADER, ""))
        args.append(len(self._failed))
        for message, error in self._failed:
            args += [message.id, message.queue, message.encode(), error]
        return args
