"""Schedule specifications: when a schedule fires.

A spec is pure computation over Unix timestamps, with no storage and no
clock of its own:

:class:`At`
    Once, at an instant (``schedule_at`` and ``schedule_in``).
:class:`Every`
    Every ``interval`` seconds, counted from an anchor instant (the time the
    schedule was first declared); the first run is one interval after it.
:class:`Cron`
    A cron expression in a time zone (``schedule_cron``); ``schedule_daily``
    is a cron spec with a fixed minute and hour. Daylight-saving changes
    follow :mod:`jobs_core.cron`.

Specs convert to and from the JSON kept in a schedule record. ``identity()``
is what makes two declarations "the same schedule": the anchor of an
interval is not part of it, so declaring ``every 60s`` again at start-up keeps
the running rhythm instead of restarting it.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs_core.cron import CronExpression
from jobs_core.errors import ScheduleError

#: Smallest interval accepted by :class:`Every`, in seconds.
MIN_INTERVAL = 0.001

# Scanning more ticks than this at once jumps ahead (a long downtime of a frequent schedule).
_SCAN_LIMIT = 2_000


class Missed(str, enum.Enum):
    """What a schedule does with ticks that passed while no scheduler ran.

    ``SKIP``
        Drop them: only a tick that a scheduler reaches within its grace
        period (60 seconds by default) runs.
    ``ONCE``
        Run one catch-up for all of them together (the default).
    ``ALL``
        Run every missed tick, oldest first, up to the scheduler's
        ``max_catch_up`` (100 by default; older ones beyond it are dropped
        with a warning).
    """

    SKIP = "skip"
    ONCE = "once"
    ALL = "all"

    @classmethod
    def parse(cls, value: object) -> Missed:
        """``value`` as a :class:`Missed`; :class:`ScheduleError` names the choices."""
        if isinstance(value, Missed):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ScheduleError(f"missed must be one of 'skip', 'once', 'all', got {value!r}") from None


class Spec:
    """Base class of schedule specifications."""

    kind: str = ""

    def next_after(self, after: float) -> float | None:
        """The first tick strictly after ``after``; ``None`` when there is none."""
        raise NotImplementedError

    def first_from(self, start: float) -> float | None:
        """The first tick at or after ``start``."""
        return self.next_after(start - MIN_INTERVAL / 2)

    def _first(self, start: float) -> float:
        first = self.first_from(start)
        if first is None:  # pragma: no cover - only one-shots end, and they override due()
            raise ScheduleError("schedule has no further ticks")
        return first

    def due(self, start: float, now: float, limit: int) -> tuple[list[float], int]:
        """Ticks in ``[start, now]``: the latest ``limit`` of them (oldest first)
        and how many there are in all (estimated when there are very many).
        """
        ticks: list[float] = []
        count = 0
        tick = self.first_from(start)
        first = tick
        while tick is not None and tick <= now:
            ticks.append(tick)
            count += 1
            if len(ticks) > limit:
                del ticks[0]
            if count >= _SCAN_LIMIT and first is not None:
                # Too many to walk: estimate the count and rescan only the tail.
                spacing = (tick - first) / (count - 1) if count > 1 else now - first
                tail_start = now - spacing * (limit + 1)
                if tail_start > tick:
                    count += math.floor((tail_start - tick) / spacing) if spacing > 0 else 0
                    tail, _ = _walk(self, tail_start, now, limit)
                    return tail, count + len(tail)
            tick = self.next_after(tick)
        return ticks, count

    def identity(self) -> dict[str, Any]:
        """What makes two declarations the same schedule (JSON)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form."""
        return self.identity()

    def describe(self) -> str:
        """A short human description (``every 60s``, ``cron '*/5 * * * *' UTC``)."""
        raise NotImplementedError

    @property
    def timezone(self) -> str | None:
        """The IANA time zone of calendar specs; ``None`` for the others."""
        return None


def _walk(spec: Spec, start: float, now: float, limit: int) -> tuple[list[float], int]:
    ticks: list[float] = []
    count = 0
    tick = spec.first_from(start)
    while tick is not None and tick <= now:
        ticks.append(tick)
        count += 1
        if len(ticks) > limit:
            del ticks[0]
        tick = spec.next_after(tick)
    return ticks, count


@dataclass(frozen=True)
class At(Spec):
    """A single run at the Unix timestamp ``at``."""

    at: float
    kind = "at"

    def next_after(self, after: float) -> float | None:
        """``at`` if it is later than ``after``."""
        return self.at if self.at > after else None

    def due(self, start: float, now: float, limit: int) -> tuple[list[float], int]:
        """``[at]`` once it is due."""
        return ([self.at], 1) if start - MIN_INTERVAL / 2 <= self.at <= now else ([], 0)

    def identity(self) -> dict[str, Any]:
        """``{"kind": "at", "at": ...}``."""
        return {"kind": self.kind, "at": self.at}

    def describe(self) -> str:
        """``at 2026-11-29T18:00:00Z``."""
        when = dt.datetime.fromtimestamp(self.at, dt.timezone.utc)
        return f"at {when.isoformat(timespec='seconds').replace('+00:00', 'Z')}"


@dataclass(frozen=True)
class Every(Spec):
    """Every ``interval`` seconds from ``anchor`` (first run at ``anchor + interval``)."""

    interval: float
    anchor: float
    kind = "every"

    def __post_init__(self) -> None:
        if not math.isfinite(self.interval) or self.interval < MIN_INTERVAL:
            raise ScheduleError(f"interval must be at least {MIN_INTERVAL} seconds, got {self.interval!r}")

    def _tick(self, k: int) -> float:
        return self.anchor + k * self.interval

    def next_after(self, after: float) -> float:
        """The first ``anchor + k * interval`` (``k >= 1``) later than ``after``."""
        k = max(1, math.floor((after - self.anchor) / self.interval) + 1)
        while self._tick(k) <= after:
            k += 1
        while k > 1 and self._tick(k - 1) > after:
            k -= 1
        return self._tick(k)

    def due(self, start: float, now: float, limit: int) -> tuple[list[float], int]:
        """Computed arithmetically, however long the downtime."""
        first = self._first(start)
        if first > now:
            return [], 0
        k_first = round((first - self.anchor) / self.interval)
        k_last = math.floor((now - self.anchor) / self.interval)
        while k_last > k_first and self._tick(k_last) > now:
            k_last -= 1
        count = k_last - k_first + 1
        return [self._tick(k) for k in range(max(k_first, k_last - limit + 1), k_last + 1)], count

    def identity(self) -> dict[str, Any]:
        """``{"kind": "every", "interval": ...}`` (the anchor is not part of it)."""
        return {"kind": self.kind, "interval": self.interval}

    def to_dict(self) -> dict[str, Any]:
        """Identity plus the anchor."""
        return {**self.identity(), "anchor": self.anchor}

    def describe(self) -> str:
        """``every 60s``."""
        return f"every {_seconds_text(self.interval)}"


class Cron(Spec):
    """A cron expression in a time zone; ``daily`` is set for daily schedules."""

    kind = "cron"

    def __init__(
        self, expression: str, timezone: str | dt.tzinfo | None = None, *, daily: str | None = None
    ) -> None:
        if daily is not None:
            hour, minute, second = parse_time_of_day(daily)
            self.cron = CronExpression(f"{minute} {hour} * * *", timezone, second=second)
            self.daily: str | None = format_time_of_day(hour, minute, second)
        else:
            self.cron = CronExpression(expression, timezone)
            self.daily = None

    @classmethod
    def daily_at(cls, time: str | dt.time, timezone: str | dt.tzinfo | None = None) -> Cron:
        """Every day at ``time`` (``"HH:MM"``, ``"HH:MM:SS"`` or a :class:`datetime.time`)."""
        if isinstance(time, dt.time):
            if time.tzinfo is not None:
                raise ScheduleError("daily time must be a wall-clock time; pass the zone as timezone=")
            time = format_time_of_day(time.hour, time.minute, time.second)
        return cls("", timezone, daily=time)

    @property
    def expression(self) -> str:
        """The cron expression (for daily specs, the one derived from the time)."""
        return self.cron.expression

    @property
    def timezone(self) -> str:
        """The IANA time zone."""
        return self.cron.timezone

    def next_after(self, after: float) -> float:
        """The first fire time later than ``after``."""
        return self.cron.next_after(after)

    def identity(self) -> dict[str, Any]:
        """Expression (or daily time) and time zone."""
        if self.daily is not None:
            return {"kind": "daily", "time": self.daily, "timezone": self.timezone}
        return {"kind": self.kind, "expression": self.expression, "timezone": self.timezone}

    def describe(self) -> str:
        """``daily at 02:30 Europe/Berlin`` or ``cron '*/5 * * * *' UTC``."""
        if self.daily is not None:
            return f"daily at {self.daily} {self.timezone}"
        return f"cron '{self.expression}' {self.timezone}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and self.identity() == other.identity()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.identity().items())))

    def __repr__(self) -> str:
        return f"<Cron {self.describe()}>"


_TIME = re.compile(r"\A(\d{1,2}):(\d{2})(?::(\d{2}))?\Z")


def parse_time_of_day(value: object) -> tuple[int, int, int]:
    """``"HH:MM"`` or ``"HH:MM:SS"`` as ``(hour, minute, second)``."""
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(f"daily time must be 'HH:MM' or 'HH:MM:SS', got {value!r}")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ScheduleError(f"daily time {value!r} is out of range (00:00 to 23:59:59)")
    return hour, minute, second


def format_time_of_day(hour: int, minute: int, second: int) -> str:
    """``HH:MM`` (or ``HH:MM:SS`` when ``second`` is not zero)."""
    text = f"{hour:02d}:{minute:02d}"
    return f"{text}:{second:02d}" if second else text


def _seconds_text(seconds: float) -> str:
    if seconds == int(seconds):
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if whole >= size and whole % size == 0:
                return f"{whole // size}{unit}"
        return f"{whole}s"
    return f"{seconds:g}s"


def interval_seconds(value: object, what: str = "interval") -> float:
    """Seconds from a number or :class:`datetime.timedelta`; :class:`ScheduleError` otherwise."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ScheduleError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    if not math.isfinite(seconds):
        raise ScheduleError(f"{what} must be finite, got {value!r}")
    return seconds


def timestamp(value: object) -> float:
    """A Unix timestamp from an aware :class:`datetime.datetime` or a number.

    Naive datetimes are refused: whether they mean UTC or local time is a
    guess this library does not make.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ScheduleError(
                f"naive datetime {value.isoformat()} has no time zone; pass an aware datetime "
                "(tzinfo=datetime.timezone.utc or a zoneinfo.ZoneInfo) or a Unix timestamp"
            )
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ScheduleError(f"time must be finite, got {value!r}")
        return float(value)
    raise ScheduleError(f"time must be an aware datetime or a Unix timestamp, got {value!r}")


def spec_from_dict(data: Mapping[str, Any]) -> Spec:
    """Rebuild a spec from its stored JSON; :class:`ScheduleError` on bad data."""
    kind = data.get("kind")
    try:
        if kind == "at":
            return At(float(data["at"]))
        if kind == "every":
            return Every(float(data["interval"]), float(data["anchor"]))
        if kind == "daily":
            return Cron.daily_at(str(data["time"]), str(data["timezone"]))
        if kind == "cron":
            return Cron(str(data["expression"]), str(data["timezone"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ScheduleError(f"stored schedule spec is invalid: {exc!r}") from exc
    raise ScheduleError(f"stored schedule spec has unknown kind {kind!r}")
