"""The control log: schedules, tick claims and purge marks in one ordered topic.

``P__control`` is a compacted topic with a single partition, so every
process reads the same records in the same order and reaches the same state:

* ``s:<name>`` — a schedule (JSON), or a tombstone when it is removed;
* ``c:<name>`` — a claim of one tick by one caller;
* ``t:<name>`` — the latest tick won (what compaction must keep of the claims);
* ``p:<queue>`` — a purge mark: delayed jobs of the queue that entered the
  delay tiers before it are dropped;
* ``q:<queue>`` — a pause flag of the queue, or a tombstone once it is resumed.

Claims need no compare-and-set: a caller writes its claim, then reads the
log up to its own record. Replaying the log in order, a claim wins when its
schedule exists and its tick is later than the schedule's last tick (which it
then becomes), so for each tick exactly one claim wins, and every reader
agrees which. The winner also writes its tick under ``t:<name>``, so that
compaction, which keeps only the latest record of each key, keeps it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from jobs_core.errors import InvalidName
from jobs_core.message import ScheduleRecord

from jobs_kafka.logs import LogReader
from jobs_kafka.producing import Record, Writer
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topics import TopicAdmin, TopicNames

#: Outcomes of recent claims kept for their callers (older ones are forgotten).
MAX_CLAIM_RESULTS = 10_000


def _schedule_to_json(record: ScheduleRecord) -> bytes:
    return json.dumps(
        {
            "name": record.name,
            "data": dict(record.data),
            "next_run_at": record.next_run_at,
            "paused": record.paused,
            "last_tick": record.last_tick,
            "updated_at": record.updated_at,
        }
    ).encode()


def _schedule_from_json(value: bytes) -> ScheduleRecord:
    data = json.loads(value)
    return ScheduleRecord(
        name=str(data["name"]),
        data=dict(data.get("data") or {}),
        next_run_at=data.get("next_run_at"),
        paused=bool(data.get("paused", False)),
        last_tick=data.get("last_tick"),
        updated_at=float(data.get("updated_at", 0.0)),
    )


class ControlLog:
    """Schedules, tick claims and purge marks, shared through one topic."""

    def __init__(self, settings: KafkaSettings, names: TopicNames, admin: TopicAdmin, writer: Writer) -> None:
        self.topic = names.control
        self.admin = admin
        self.writer = writer
        self.schedules: dict[str, ScheduleRecord] = {}
        self.claims: dict[int, bool] = {}
        self.purges: dict[str, float] = {}
        self.paused: set[str] = set()
        #: Whether each recent pause or resume record changed the flag (by offset).
        self.pause_changes: dict[int, bool] = {}
        self.lock = threading.Lock()
        self.reader = LogReader(settings, self.topic, self._apply, recreate=self._recreate)
        self._last_read = 0.0

    def ensure(self) -> None:
        """Create the topic if needed."""
        self.admin.ensure([self.topic], compacted=True, partitions=1)

    def _recreate(self) -> None:
        """Create the topic again (the brokers lost it)."""
        self.admin.forget(self.topic)
        self.ensure()

    def _apply(self, record: Any) -> None:
        key = (record.key() or b"").decode("utf-8", "replace")
        kind, _, name = key.partition(":")
        value = record.value()
        with self.lock:
            if kind == "s":
                old = self.schedules.pop(name, None)
                if value is None:
                    return
                try:
                    schedule = _schedule_from_json(value)
                except Exception:  # an unreadable record is skipped, never fatal
                    return
                if schedule.last_tick is None and old is not None:
                    schedule = replace(schedule, last_tick=old.last_tick)
                self.schedules[name] = schedule
            elif kind == "c" and value is not None:
                try:
                    tick = float(json.loads(value)["tick"])
                except Exception:  # an unreadable record is skipped, never fatal
                    return
                current = self.schedules.get(name)
                won = current is not None and (current.last_tick is None or tick > current.last_tick)
                if won and current is not None:
                    self.schedules[name] = replace(current, last_tick=tick)
                self.claims[record.offset()] = won
                if len(self.claims) > MAX_CLAIM_RESULTS:
                    del self.claims[next(iter(self.claims))]
            elif kind == "t" and value is not None:
                try:
                    won_tick = float(json.loads(value)["tick"])
                except Exception:  # an unreadable record is skipped, never fatal
                    return
                current = self.schedules.get(name)
                if current is not None and (current.last_tick is None or won_tick > current.last_tick):
                    self.schedules[name] = replace(current, last_tick=won_tick)
            elif kind == "q":
                changed = (name in self.paused) == (value is None)
                if value is None:
                    self.paused.discard(name)
                else:
                    self.paused.add(name)
                self.pause_changes[record.offset()] = changed
                if len(self.pause_changes) > MAX_CLAIM_RESULTS:
                    del self.pause_changes[next(iter(self.pause_changes))]
            elif kind == "p" and value is not None:
                try:
                    self.purges[name] = float(json.loads(value)["before"])
                except Exception:  # an unreadable record is skipped, never fatal
                    return

    def refresh(self, until: int | None = None) -> None:
        """Read the log to its end."""
        self.ensure()
        self.reader.catch_up(until)
        self._last_read = time.monotonic()

    # -- schedules -------------------------------------------------------------

    def save(self, record: ScheduleRecord) -> None:
        """Insert or replace a schedule."""
        if not record.name or "\n" in record.name:
            raise InvalidName(f"invalid schedule name {record.name!r}")
        self.ensure()
        self.writer.send([Record(self.topic, _schedule_to_json(record), key=f"s:{record.name}".encode())])

    def all(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        self.refresh()
        with self.lock:
            return [self.schedules[name] for name in sorted(self.schedules)]

    def remove(self, name: str) -> bool:
        """Delete a schedule; ``False`` if there was none."""
        self.refresh()
        with self.lock:
            if name not in self.schedules:
                return False
        self.writer.send([Record(self.topic, None, key=f"{kind}:{name}".encode()) for kind in "sct"])
        return True

    def claim(self, name: str, tick: float) -> bool:
        """Claim ``tick`` of schedule ``name``: ``True`` for exactly one caller."""
        self.refresh()
        with self.lock:
            schedule = self.schedules.get(name)
            if schedule is None or (schedule.last_tick is not None and tick <= schedule.last_tick):
                return False
        value = json.dumps({"tick": tick, "claimant": uuid.uuid4().hex}).encode()
        [(_, _, offset)] = self.writer.send([Record(self.topic, value, key=f"c:{name}".encode())])
        self.refresh(until=offset)
        with self.lock:
            won = self.claims.pop(offset, False)
            winner = self.schedules.get(name)
        if won and winner is not None:
            # Record the won tick under its own key, which compaction retains next to
            # the schedule (never overwriting a concurrent change of the schedule).
            value = json.dumps({"tick": tick}).encode()
            self.writer.send([Record(self.topic, value, key=f"t:{name}".encode())])
        return won

    # -- purge marks -------------------------------------------------------------

    def mark_purge(self, queue: str, before: float) -> None:
        """Drop delayed jobs of ``queue`` that entered the delay tiers before ``before``."""
        self.ensure()
        value = json.dumps({"before": before}).encode()
        self.writer.send([Record(self.topic, value, key=f"p:{queue}".encode())])
        self.refresh()

    def purged_before(self, queue: str, max_age: float = 1.0) -> float:
        """The purge mark of ``queue`` (0 when none), read at most ``max_age`` seconds ago."""
        if time.monotonic() - self._last_read > max_age:
            self.refresh()
        with self.lock:
            return self.purges.get(queue, 0.0)

    # -- pause flags -------------------------------------------------------------

    def set_paused(self, queue: str, paused: bool) -> bool:
        """Write the pause flag of ``queue``; whether it changed (judged in log order)."""
        self.ensure()
        value = json.dumps({"paused_at": time.time()}).encode() if paused else None
        [(_, _, offset)] = self.writer.send([Record(self.topic, value, key=f"q:{queue}".encode())])
        self.refresh(until=offset)
        with self.lock:
            return self.pause_changes.pop(offset, False)

    def paused_queues(self, max_age: float = 0.2) -> list[str]:
        """The paused queues, sorted, read at most ``max_age`` seconds ago."""
        if time.monotonic() - self._last_read > max_age:
            self.refresh()
        with self.lock:
            return sorted(self.paused)

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()
