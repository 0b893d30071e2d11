"""Per-partition bookkeeping: fetched records, leases, and the committable offset.

A partition's records are handed out in offset order and may finish in any
order. The offset committed for a partition is the lowest offset not yet
finished (or the next offset to fetch when all are finished), so a crash
replays only unfinished work and never skips any.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple


class Fetched(NamedTuple):
    """A record as fetched from a queue topic (a tuple: one is built per record)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


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
    #: Since when (monotonic) the window is full, while it is.
    full_since: float | None = None
    revoking: bool = False

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
        """Return expired leases to the ready heap; how many."""
        expired = [offset for offset, lease in self.leases.items() if lease.expires_at <= now]
        for offset in expired:
            self.push_back(self.leases.pop(offset).record)
        return len(expired)

    def next_expiry(self) -> float | None:
        """When the earliest lease ends."""
        return min((lease.expires_at for lease in self.leases.values()), default=None)

    def pending_here(self) -> int:
        """Records fetched here that are neither leased nor done."""
        return len(self.ready) + len(self.returned)

    def done_uncommitted(self) -> int:
        """Records finished here whose offsets are not committable yet (out of order)."""
        return len(self.done)
