"""The dead-letter topic, which is also the failed store.

``P__dead`` is a compacted, single-partition topic keyed by failed-job id.
A failed job is one record whose value is a JSON entry (the message, the
error with its traceback, when it failed) and whose headers say where it
came from: ``jobs.origin.topic``, ``jobs.origin.partition``,
``jobs.origin.offset``, ``jobs.attempts``, ``jobs.exception`` and
``jobs.traceback``. ``retry_failed`` and ``forget_failed`` write a
tombstone for the id, so the job leaves the list (and compaction removes
it). Every process reads the topic to list failed jobs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from jobs_core.errors import MalformedMessage
from jobs_core.message import FailedJob, Message

from jobs_kafka.logs import LogReader
from jobs_kafka.producing import Headers, Record, Writer
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames

Origin = tuple[str, int, int]


def exception_line(error: str) -> str:
    """The last non-empty line of an error text (the exception of a traceback)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class DeadLetters:
    """Writes failed jobs and reads the failed store back."""

    def __init__(self, settings: KafkaSettings, names: TopicNames, admin: TopicAdmin, writer: Writer) -> None:
        self.settings = settings
        self.topic = names.dead
        self.admin = admin
        self.writer = writer
        self.entries: dict[str, FailedJob] = {}
        self.lock = threading.Lock()
        self.reader = LogReader(settings, self.topic, self._apply)

    def ensure(self) -> None:
        """Create the topic if needed."""
        self.admin.ensure([self.topic], compacted=True, partitions=1)

    # -- writing -------------------------------------------------------------

    @staticmethod
    def _headers(origin: Origin | None, attempts: int, error: str) -> Headers:
        headers: Headers = [
            ("jobs.attempts", str(attempts).encode()),
            ("jobs.exception", exception_line(error).encode()),
            ("jobs.traceback", error.encode()),
        ]
        if origin is not None:
            headers += [
                ("jobs.origin.topic", origin[0].encode()),
                ("jobs.origin.partition", str(origin[1]).encode()),
                ("jobs.origin.offset", str(origin[2]).encode()),
            ]
        return headers

    def failed_record(self, message: Message, error: str, origin: Origin | None) -> Record:
        """The record that puts ``message`` (attempts already counted) in the failed store."""
        entry = {
            "id": message.id,
            "name": message.name,
            "queue": message.queue,
            "error": error,
            "failed_at": time.time(),
            "message": message.to_dict(),
            "raw": None,
        }
        return Record(
            self.topic,
            json.dumps(entry).encode(),
            key=message.id.encode(),
            headers=self._headers(origin, message.attempts, error),
        )

    def raw_record(self, queue: str, raw: bytes | None, reason: str, origin: Origin) -> Record:
        """The record for a body that could not be decoded (it keeps the body as text)."""
        ident = f"raw-{origin[0]}-{origin[1]}-{origin[2]}"
        entry = {
            "id": ident,
            "name": "",
            "queue": queue,
            "error": reason,
            "failed_at": time.time(),
            "message": None,
            "raw": (raw or b"").decode("utf-8", "replace"),
        }
        return Record(
            self.topic,
            json.dumps(entry).encode(),
            key=ident.encode(),
            headers=self._headers(origin, 0, reason),
        )

    def write(self, records: list[Record]) -> None:
        """Store failed-job records."""
        self.ensure()
        self.writer.send(records)

    def resolve(self, failed_id: str) -> None:
        """Remove a failed job from the store (a tombstone for its id)."""
        self.resolve_many([failed_id])

    def resolve_many(self, failed_ids: list[str]) -> None:
        """Remove several failed jobs from the store."""
        if not failed_ids:
            return
        self.ensure()
        self.writer.send([Record(self.topic, None, key=ident.encode()) for ident in failed_ids])
        with self.lock:
            for ident in failed_ids:
                self.entries.pop(ident, None)

    # -- reading -------------------------------------------------------------

    def _apply(self, record: Any) -> None:
        key = (record.key() or b"").decode("utf-8", "replace")
        value = record.value()
        with self.lock:
            self.entries.pop(key, None)
            if value is None:
                return
            try:
                self.entries[key] = self._entry(json.loads(value))
            except (ValueError, KeyError, TypeError, MalformedMessage):
                return

    @staticmethod
    def _entry(data: dict[str, Any]) -> FailedJob:
        message = Message.from_dict(data["message"]) if data.get("message") else None
        return FailedJob(
            id=str(data["id"]),
            name=message.name if message else "",
            queue=message.queue if message else str(data.get("queue", "")),
            payload=message.payload if message else None,
            attempts=message.attempts if message else 0,
            error=str(data.get("error", "")),
            failed_at=float(data.get("failed_at", 0.0)),
            message=message,
            raw=data.get("raw"),
        )

    def current(self) -> list[FailedJob]:
        """Every failed job, oldest first, read up to the end of the topic."""
        self.ensure()
        self.reader.catch_up()
        with self.lock:
            return list(self.entries.values())

    def get(self, failed_id: str) -> FailedJob | None:
        """One failed job, or ``None``."""
        self.ensure()
        self.reader.catch_up()
        with self.lock:
            return self.entries.get(failed_id)

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()
