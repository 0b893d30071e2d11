"""Per-partition bookkeeping: fetched records, leases, and the committable offset.

A partition's records are handed out in offset order and may finish in any
order. The offset committed for a partition is the lowest offset not yet
finished (or the next offset to fetch when all are finished), so a crash
replays only unfinished work and never skips any.

A record with a key (an ordering key: every record of a key is in one
partition) is handed out only while fewer than its ``limit`` records of that
key are leased, and never before an earlier record of its key: a record
that must wait is set aside with its key (:attr:`PartitionState.blocked`),
and the records of other keys behind it are handed out meanwhile.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple


class Fetched(NamedTuple):
    """A record as fetched from a queue topic (a tuple: one is built per record)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    #: The record key: the ordering key of the job (``None``: none).
    key: bytes | None = None
    #: Records of ``key`` that may be leased at once (the job's ``key_concurrency``).
    limit: int = 1


@dataclass
class Lease:
    """A record leased to one delivery."""

    receipt: str
    expires_at: float
    record: Fetched


@dataclass
class PartitionState:
    """The state of one assigned partition (one assignment generation)."""

    topic: str
    partition: int
    generation: int
    #: Fetched records not handed out yet, in offset order.
    ready: deque[Fetched] = field(default_factory=deque)
    #: Records handed back (lease expired, released), by offset; all below ``ready``'s.
    returned: list[tuple[int, Fetched]] = field(default_factory=list)
    leases: dict[int, Lease] = field(default_factory=dict)
    unfinished: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None
    eof_offset: int = -1
    #: The group's committed offset when the partition was assigned (where fetching starts), if any.
    start: int | None = None
    paused: bool = False
    #: Since when (monotonic) the window is full, while it is; restarted when a window
    #: full of records nobody took has one taken (see ``full_busy``).
    full_since: float | None = None
    #: Whether a record of the full window was leased (jobs of it run) since ``full_since``.
    full_busy: bool = False
    revoking: bool = False
    #: Leased records per key (keys with none are left out).
    running: dict[bytes, int] = field(default_factory=dict)
    #: Records set aside until an earlier record of their key finishes, per key, by offset.
    blocked: dict[bytes, list[tuple[int, Fetched]]] = field(default_factory=dict)
    #: No lease ends before this (wall clock): :meth:`expire` looks at the leases
    #: only from then on, not at every reserve and poll (renewals only move ends later).
    expiry_floor: float = math.inf

    def add(self, record: Fetched) -> bool:
        """Buffer a fetched record; ``False`` if it was already seen (a re-fetch)."""
        if self.next_offset is not None and record.offset < self.next_offset:
            return False
        self.ready.append(record)
        self.unfinished.append(record.offset)
        self.next_offset = record.offset + 1
        return True

    def pop_ready(self) -> Fetched | None:
        """The lowest ready record, or ``None``."""
        if self.returned:
            return heapq.heappop(self.returned)[1]
        if self.ready:
            return self.ready.popleft()
        return None

    def push_back(self, record: Fetched) -> None:
        """Make a leased record ready again (lease expired or released)."""
        heapq.heappush(self.returned, (record.offset, record))

    def pop_runnable(self) -> Fetched | None:
        """The lowest ready record that may run now, or ``None``.

        A keyed record whose key has ``limit`` records leased, or an earlier
        record waiting, is set aside in :attr:`blocked` (it keeps its place
        in the key's line); the records behind it are looked at next.
        """
        while True:
            if self.returned:
                record = heapq.heappop(self.returned)[1]
            elif self.ready:
                record = self.ready.popleft()
            else:
                return None
            key = record.key
            if key is None:
                return record
            waiting = self.blocked.get(key)
            if self.running.get(key, 0) < record.limit and (not waiting or waiting[0][0] > record.offset):
                return record
            if waiting is None:
                waiting = self.blocked[key] = []
            bisect.insort(waiting, (record.offset, record), key=_first)

    def lease(self, record: Fetched, receipt: str, expires_at: float) -> None:
        """Lease ``record`` (popped by :meth:`pop_runnable`)."""
        self.leases[record.offset] = Lease(receipt, expires_at, record)
        self.expiry_floor = min(self.expiry_floor, expires_at)
        key = record.key
        if key is not None:
            self.running[key] = self.running.get(key, 0) + 1

    def renew(self, lease: Lease, expires_at: float) -> None:
        """Move the end of ``lease`` (one of :attr:`leases`), later or earlier."""
        lease.expires_at = expires_at
        self.expiry_floor = min(self.expiry_floor, expires_at)

    def unlease(self, offset: int) -> Lease:
        """End the lease of ``offset`` (finished, given back or expired); its key's next record may run."""
        lease = self.leases.pop(offset)
        key = lease.record.key
        if key is not None:
            count = self.running[key] - 1
            if count:
                self.running[key] = count
            else:
                del self.running[key]
            waiting = self.blocked.get(key)
            if waiting:
                self.push_back(waiting.pop(0)[1])
                if not waiting:
                    del self.blocked[key]
        return lease

    def unblock(self) -> None:
        """Make every set-aside record ready again (before a purge looks at all of them)."""
        for waiting in self.blocked.values():
            for item in waiting:
                heapq.heappush(self.returned, item)
        self.blocked.clear()

    def finish(self, offset: int) -> None:
        """Mark ``offset`` done and advance the committable prefix."""
        self.done.add(offset)
        unfinished, done = self.unfinished, self.done
        while unfinished and unfinished[0] in done:
            done.discard(unfinished.popleft())

    def commit_point(self) -> int | None:
        """The offset to commit: lowest unfinished, or the next to fetch."""
        if self.unfinished:
            return self.unfinished[0]
        return self.next_offset

    @property
    def in_flight(self) -> int:
        """Records fetched and not yet committable."""
        return len(self.unfinished)

    def expire(self, now: float) -> int:
        """Return expired leases to the ready heap; how many.

        Cheap until the earliest lease may end: a worker holding thousands of
        leases calls this on every reserve, and the poll loop on every poll.
        """
        if now < self.expiry_floor:
            return 0
        expired = [offset for offset, lease in self.leases.items() if lease.expires_at <= now]
        for offset in expired:
            self.push_back(self.unlease(offset).record)
        self.expiry_floor = min((lease.expires_at for lease in self.leases.values()), default=math.inf)
        return len(expired)

    def next_expiry(self) -> float | None:
        """When the earliest lease ends."""
        return min((lease.expires_at for lease in self.leases.values()), default=None)

    def pending_here(self) -> int:
        """Records fetched here that are neither leased nor done."""
        waiting = sum(map(len, self.blocked.values())) if self.blocked else 0
        return len(self.ready) + len(self.returned) + waiting

    def done_uncommitted(self) -> int:
        """Records finished here whose offsets are not committable yet (out of order)."""
        return len(self.done)


def _first(item: tuple[int, Fetched]) -> int:
    return item[0]
