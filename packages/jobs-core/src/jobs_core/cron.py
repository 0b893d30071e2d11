"""Cron expressions evaluated in a time zone, with daylight-saving rules.

:class:`CronExpression` answers one question: the first fire time after a
given instant. Expressions are parsed and matched by `croniter`_ on local wall
clock times; this module maps those wall times to instants and applies the
rules of the classic cron daemon (Vixie cron, cronie) at daylight-saving
changes:

* When clocks go **forward**, wall times in the skipped hour do not exist. A
  fire time that falls in the gap runs once, at the instant of the change
  (``30 2 * * *`` in ``Europe/Berlin`` runs at 03:00 CEST on the spring-forward
  day). Several skipped fire times collapse into that one run.
* When clocks go **back**, wall times in the repeated hour happen twice. A
  fire time with a fixed minute and hour (``30 2 * * *``) runs once, at the
  first occurrence. An expression whose minute or hour field is a wildcard
  (``*/15 * * * *``, ``0 * * * *``) runs by elapsed time, so it also fires in
  the repeated hour.

.. _croniter: https://pypi.org/project/croniter/
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from jobs_core.errors import ScheduleError

#: Short names accepted in place of five fields.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Wider than any daylight-saving shift in use (most are one hour; some 30 minutes or two hours).
_MARGIN = timedelta(hours=3)
_MARGIN_SECONDS = _MARGIN.total_seconds()
_MAX_STEPS = 20_000


def load_zone(value: str | tzinfo | None) -> ZoneInfo:
    """The :class:`~zoneinfo.ZoneInfo` for an IANA name (``"Europe/Berlin"``).

    ``None`` and :data:`datetime.timezone.utc` mean UTC. Raises
    :class:`ScheduleError` naming the zone when it is unknown, and for fixed
    offsets, which cannot follow daylight-saving time.
    """
    if value is None or value is dt_timezone.utc:
        return ZoneInfo("UTC")
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str):
        raise ScheduleError(
            f"time zone must be an IANA name such as 'Europe/Berlin' or a zoneinfo.ZoneInfo, got {value!r}"
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin'") from exc


def zone_name(zone: ZoneInfo) -> str:
    """The IANA key of ``zone`` (what schedules store)."""
    key = zone.key
    if not key:
        raise ScheduleError("time zone has no IANA name; build it with ZoneInfo('Area/City')")
    return key


class CronExpression:
    """A five-field cron expression (``minute hour day month weekday``) in a time zone.

    Aliases (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``)
    are accepted. ``second`` (used by daily schedules) adds a seconds field.
    Raises :class:`ScheduleError` naming the problem for an invalid
    expression or time zone, or an expression that never fires.
    """

    def __init__(self, expression: str, timezone: str | tzinfo | None = None, *, second: int = 0) -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ScheduleError(f"cron expression must be a non-empty string, got {expression!r}")
        text = " ".join(expression.split())
        fields = ALIASES.get(text.lower(), text).split()
        if len(fields) != 5:
            raise ScheduleError(
                f"invalid cron expression {expression!r}: expected 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(fields)}"
            )
        if not 0 <= second <= 59:
            raise ScheduleError(f"second must be between 0 and 59, got {second!r}")
        self.expression = text
        self.second = second
        self.zone = load_zone(timezone)
        self.timezone = zone_name(self.zone)
        self._cron = " ".join([*fields, str(second)]) if second else " ".join(fields)
        # Vixie cron: a wildcard minute or hour runs by elapsed time across a fall-back change.
        self.repeats_in_fold = fields[0].startswith("*") or fields[1].startswith("*")
        try:
            croniter(self._cron, datetime(2000, 1, 1))
        except (CroniterError, ValueError, KeyError, TypeError) as exc:
            raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, {self.timezone!r})"

    def next_after(self, after: float) -> float:
        """The first fire time strictly after the Unix timestamp ``after``."""
        near = self.repeats_in_fold and self._near_transition(after)
        start = self._wall(after) - (_MARGIN if near else timedelta(0))
        try:
            matches = croniter(self._cron, start)
        except (CroniterError, ValueError) as exc:  # pragma: no cover - validated in __init__
            raise ScheduleError(f"invalid cron expression {self.expression!r}: {exc}") from exc
        best: float | None = None
        limit: datetime | None = None
        for _ in range(_MAX_STEPS):
            try:
                wall = matches.get_next(datetime)
            except CroniterBadDateError as exc:
                raise ScheduleError(f"cron expression {self.expression!r} never fires") from exc
            if limit is not None and wall > limit:
                break
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
                    extra = _MARGIN if self.repeats_in_fold and self._near_transition(instant) else None
                    limit = wall + extra if extra is not None else wall
            if limit is not None and wall >= limit:
                break
        if best is None:
            raise ScheduleError(f"cron expression {self.expression!r} never fires")
        return best

    # -- wall clock <-> instants ---------------------------------------------

    def _wall(self, instant: float) -> datetime:
        return datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None)

    def _offset(self, instant: float) -> timedelta | None:
        return datetime.fromtimestamp(instant, self.zone).utcoffset()

    def _near_transition(self, instant: float) -> bool:
        here = self._offset(instant)
        return (
            self._offset(instant - _MARGIN_SECONDS) != here or self._offset(instant + _MARGIN_SECONDS) != here
        )

    def _instants(self, wall: datetime) -> tuple[float, ...]:
        """The instants at which the local wall time ``wall`` fires."""
        first = wall.replace(tzinfo=self.zone, fold=0).timestamp()
        second = wall.replace(tzinfo=self.zone, fold=1).timestamp()
        if first == second:
            return (first,)
        if self._wall(first) == wall:  # repeated wall time (clocks went back)
            return (first, second) if self.repeats_in_fold else (first,)
        # Skipped wall time (clocks went forward): fire at the change itself.
        return (self._transition(second, first),)

    def _transition(self, before: float, after: float) -> float:
        """The instant, between ``before`` and ``after``, where the UTC offset changes."""
        low, high = math.floor(before), math.ceil(after)
        start = self._offset(low)
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == start:
                low = middle
            else:
                high = middle
        return float(high)
