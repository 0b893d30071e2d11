"""The dead-letter topic, which is also the failed store.

``P__dead`` is a compacted, single-partition topic keyed by failed-job id.
A failed job is one record whose value is a JSON entry (the message, the
error with its traceback, when it failed) and whose headers say where it
came from: ``jobs.origin.topic``, ``jobs.origin.partition``,
``jobs.origin.offset``, ``jobs.attempts``, ``jobs.exception`` and
``jobs.traceback``. ``retry_failed`` and ``forget_failed`` write a
tombstone for the id, so the job leaves the list (and compaction removes
it). Every process reads the topic to list failed jobs.

Every entry fits in one record (``message.max.bytes`` less the framing):
error texts are cut to :data:`MAX_ERROR_CHARS` (their head and tail), and a
body that still does not fit is cut too. A cut entry keeps its headers, the
reason, the job's name and queue, and says what was cut:
``"truncated": {"size": <bytes of the whole body>, "sha256": <its hash>,
"kept": <bytes kept>}`` (also in the header ``jobs.truncated``). Its whole
body is still in the queue topic at the origin offset, from where
``retry_failed`` replays it while the topic's retention keeps it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

from jobs_core.message import FailedJob, Message

from jobs_kafka.logs import LogReader
from jobs_kafka.producing import Headers, Record, Writer, headers_size
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames

Origin = tuple[str, int, int]

log = logging.getLogger("jobs_kafka.dead")

#: Most characters of an error text (reason, traceback) kept in an entry: its head and tail.
MAX_ERROR_CHARS = 16_000
#: Most characters of the exception line kept in the ``jobs.exception`` header.
MAX_EXCEPTION_CHARS = 1_000
#: Header of a cut entry: ``size=<bytes>;sha256=<hex>;kept=<bytes>``.
TRUNCATED_HEADER = "jobs.truncated"


def exception_line(error: str) -> str:
    """The last non-empty line of an error text (the exception of a traceback)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def clip(text: str, limit: int) -> str:
    """``text``, or its head and tail with a note of how much was cut between them."""
    if len(text) <= limit:
        return text
    tail = limit // 2
    head = limit - tail
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-tail:]}"


def _origin(headers: list[tuple[str, bytes]] | None) -> Origin | None:
    """The origin named by a dead-letter record's headers, or ``None``."""
    found = {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}
    try:
        return (
            found["jobs.origin.topic"],
            int(found["jobs.origin.partition"]),
            int(found["jobs.origin.offset"]),
        )
    except (KeyError, ValueError):
        return None


def _dump(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry).encode()


class DeadLetters:
    """Writes failed jobs and reads the failed store back."""

    def __init__(
        self, settings: KafkaSettings, names: TopicNames, admin: TopicAdmin, writer: Writer, limit: int
    ) -> None:
        self.settings = settings
        self.topic = names.dead
        self.admin = admin
        self.writer = writer
        #: Most bytes of an entry's value, key and headers together.
        self.limit = limit
        #: Most characters kept of an error text (less where the limit is small).
        self.max_error = min(MAX_ERROR_CHARS, max(200, limit // 8))
        self.entries: dict[str, FailedJob] = {}
        #: Entries stored cut: ``id -> (size, sha256, origin)``.
        self.cut: dict[str, tuple[int, str, Origin | None]] = {}
        self.lock = threading.Lock()
        self.reader = LogReader(settings, self.topic, self._apply, recreate=self._recreate)

    def ensure(self) -> None:
        """Create the topic if needed."""
        self.admin.ensure([self.topic], compacted=True, partitions=1)

    def _recreate(self) -> None:
        """Create the topic again (the brokers lost it)."""
        self.admin.forget(self.topic)
        self.ensure()

    # -- writing -------------------------------------------------------------

    def _headers(self, origin: Origin | None, attempts: int, error: str) -> Headers:
        headers: Headers = [
            ("jobs.attempts", str(attempts).encode()),
            ("jobs.exception", clip(exception_line(error), MAX_EXCEPTION_CHARS).encode()),
            ("jobs.traceback", clip(error, self.max_error).encode()),
        ]
        if origin is not None:
            headers += [
                ("jobs.origin.topic", origin[0].encode()),
                ("jobs.origin.partition", str(origin[1]).encode()),
                ("jobs.origin.offset", str(origin[2]).encode()),
            ]
        return headers

    def _record(self, key: str, entry: dict[str, Any], body: bytes | None, headers: Headers) -> Record:
        """The record of ``entry``; if it is over the limit, with ``body`` cut to fit.

        ``entry`` holds the body as ``message`` or ``raw``; a cut entry holds
        neither the message nor the whole text, but the first bytes of ``body``
        as ``raw`` and the size and hash of the whole under ``truncated``.
        """
        value = _dump(entry)
        budget = self.limit - headers_size(headers) - len(key)
        if len(value) <= budget:
            return Record(self.topic, value, key=key.encode(), headers=headers)
        whole = body or b""
        info = {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "kept": 0}
        cut = {**entry, "message": None, "raw": "", "truncated": info}
        headers = [*headers, (TRUNCATED_HEADER, f"size={info['size']};sha256={info['sha256']}".encode())]
        budget = self.limit - headers_size(headers) - len(key) - 32  # room for the digits of "kept"
        room = budget - len(_dump(cut))
        kept = max(0, min(len(whole), room))
        while kept > 0:
            # JSON may escape a byte into up to 6 characters (12 for a pair): shrink until it fits.
            text = whole[:kept].decode("utf-8", "replace")
            size = len(json.dumps(text)) - 2
            if size <= room:
                break
            kept = max(0, min(kept - 1, kept * room // size - 16))
        info["kept"] = kept
        cut["raw"] = whole[:kept].decode("utf-8", "replace") if kept else ""
        value = _dump(cut)
        if len(value) > budget + 32:  # cannot happen unless the limit is absurdly small
            cut["raw"], info["kept"] = "", 0
            cut["error"] = clip(str(cut["error"]), 200)
            value = _dump(cut)
        log.warning(
            "failed job %s is stored truncated (%d of %d bytes kept, sha256 %s) to fit in one record",
            key,
            info["kept"],
            info["size"],
            info["sha256"],
        )
        return Record(self.topic, value, key=key.encode(), headers=headers)

    def failed_record(self, message: Message, error: str, origin: Origin | None) -> Record:
        """The record that puts ``message`` (attempts already counted) in the failed store."""
        error = clip(error, self.max_error)
        entry = {
            "id": message.id,
            "name": message.name,
            "queue": message.queue,
            "attempts": message.attempts,
            "error": error,
            "failed_at": time.time(),
            "message": message.to_dict(),
            "raw": None,
        }
        body = None
        headers = self._headers(origin, message.attempts, error)
        if len(_dump(entry)) + headers_size(headers) > self.limit // 2:
            body = message.encode()  # only needed (for the hash) when the entry might be cut
        return self._record(message.id, entry, body, headers)

    def raw_record(self, queue: str, raw: bytes | None, reason: str, origin: Origin) -> Record:
        """The record for a body that could not be decoded (it keeps the body as text)."""
        ident = f"raw-{origin[0]}-{origin[1]}-{origin[2]}"
        reason = clip(reason, self.max_error)
        entry = {
            "id": ident,
            "name": "",
            "queue": queue,
            "error": reason,
            "failed_at": time.time(),
            "message": None,
            "raw": (raw or b"").decode("utf-8", "replace"),
        }
        return self._record(ident, entry, raw, self._headers(origin, 0, reason))

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
            self.cut.pop(key, None)
            if value is None:
                return
            try:
                data = json.loads(value)
                self.entries[key] = self._entry(data)
                info = data.get("truncated")
                if info:
                    self.cut[key] = (int(info["size"]), str(info["sha256"]), _origin(record.headers()))
            except Exception as exc:  # any entry that cannot be read is listed as such, never fatal
                log.warning(
                    "unreadable entry %r in %s at offset %s: %r", key, self.topic, record.offset(), exc
                )
                self.entries[key] = FailedJob(
                    id=key,
                    name="",
                    queue="",
                    payload=None,
                    attempts=0,
                    error=f"unreadable failed-job entry: {exc!r}",
                    failed_at=(record.timestamp() or (0, 0))[1] / 1000.0,
                    raw=bytes(value[:4096]).decode("utf-8", "replace"),
                )

    @staticmethod
    def _entry(data: dict[str, Any]) -> FailedJob:
        message = Message.from_dict(data["message"]) if data.get("message") else None
        error = str(data.get("error", ""))
        info = data.get("truncated")
        if info:
            error += (
                f"\n[stored truncated: {int(info['kept'])} of {int(info['size'])} bytes kept, "
                f"sha256 {info['sha256']}]"
            )
        return FailedJob(
            id=str(data["id"]),
            name=message.name if message else str(data.get("name") or ""),
            queue=message.queue if message else str(data.get("queue", "")),
            payload=message.payload if message else None,
            attempts=message.attempts if message else int(data.get("attempts") or 0),
            error=error,
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

    def truncation(self, failed_id: str) -> tuple[int, str, Origin | None] | None:
        """``(size, sha256, origin)`` of an entry stored cut, or ``None`` if it is whole."""
        with self.lock:
            return self.cut.get(failed_id)

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()
