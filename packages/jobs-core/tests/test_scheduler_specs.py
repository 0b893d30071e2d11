"""Schedule specs: next fire times (with daylight-saving changes) and invalid input."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from zoneinfo import ZoneInfo

import pytest
from jobs_core.cron import CronExpression
from jobs_core.errors import ScheduleError
from jobs_core.schedule import At, Cron, Every, Missed, interval_seconds, spec_from_dict, timestamp

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, fold: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).timestamp()


def fires(spec: Cron | CronExpression, start: float, count: int, zone: ZoneInfo) -> list[str]:
    """The next ``count`` fire times after ``start`` as local 'MM-DD HH:MM TZ' text."""
    out = []
    for _ in range(count):
        start = spec.next_after(start)
        out.append(dt.datetime.fromtimestamp(start, zone).strftime("%m-%d %H:%M %Z"))
    return out


# -- daily schedules across daylight-saving changes ----------------------------


def test_daily_at_0230_on_the_spring_forward_day_runs_at_the_change_in_berlin() -> None:
    spec = Cron.daily_at("02:30", "Europe/Berlin")
    start = local(BERLIN, 2026, 3, 27, 12, 0)
    assert fires(spec, start, 4, BERLIN) == [
        "03-28 02:30 CET",
        "03-29 03:00 CEST",  # 02:30 does not exist that day: run when clocks jump to 03:00
        "03-30 02:30 CEST",
        "03-31 02:30 CEST",
    ]
    # The run on the change day is at 01:00 UTC, exactly one run that day.
    assert (
        spec.next_after(local(BERLIN, 2026, 3, 28, 12, 0))
        == dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()
    )


def test_daily_at_0230_on_the_fall_back_day_runs_once_in_berlin() -> None:
    spec = Cron.daily_at("02:30", "Europe/Berlin")
    start = local(BERLIN, 2026, 10, 23, 12, 0)
    assert fires(spec, start, 4, BERLIN) == [
        "10-24 02:30 CEST",
        "10-25 02:30 CEST",  # the first 02:30; the repeated one (CET) does not run
        "10-26 02:30 CET",
        "10-27 02:30 CET",
    ]
    after_first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    assert spec.next_after(after_first) == local(BERLIN, 2026, 10, 26, 2, 30)


def test_daily_keeps_its_wall_clock_time_across_both_changes() -> None:
    spec = Cron.daily_at("09:00", "Europe/Berlin")
    spring = spec.next_after(local(BERLIN, 2026, 3, 28, 9, 0))
    assert dt.datetime.fromtimestamp(spring, UTC) == dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    fall = spec.next_after(local(BERLIN, 2026, 10, 24, 9, 0))
    assert dt.datetime.fromtimestamp(fall, UTC) == dt.datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    # 23 hours and 25 hours after the previous runs: the wall clock rules, not elapsed time.
    assert spring - local(BERLIN, 2026, 3, 28, 9, 0) == 23 * 3600
    assert fall - local(BERLIN, 2026, 10, 24, 9, 0) == 25 * 3600


def test_daily_in_new_york_across_its_changes() -> None:
    spec = Cron.daily_at("02:30", "America/New_York")
    assert fires(spec, local(NEW_YORK, 2026, 3, 7, 12, 0), 2, NEW_YORK) == [
        "03-08 03:00 EDT",
        "03-09 02:30 EDT",
    ]
    # New York repeats 01:00-01:59 when clocks go back at 02:00: 02:30 happens once.
    assert fires(spec, local(NEW_YORK, 2026, 10, 31, 12, 0), 2, NEW_YORK) == [
        "11-01 02:30 EST",
        "11-02 02:30 EST",
    ]
    repeated = Cron.daily_at("01:30", "America/New_York")
    assert fires(repeated, local(NEW_YORK, 2026, 10, 31, 12, 0), 2, NEW_YORK) == [
        "11-01 01:30 EDT",
        "11-02 01:30 EST",
    ]


def test_daily_with_seconds_and_a_time_object() -> None:
    spec = Cron.daily_at(dt.time(6, 15, 30), "UTC")
    assert spec.describe() == "daily at 06:15:30 UTC"
    assert spec.next_after(dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()) == (
        dt.datetime(2026, 1, 1, 6, 15, 30, tzinfo=UTC).timestamp()
    )


# -- cron expressions ------------------------------------------------------------


def test_cron_30_2_in_berlin_matches_the_daily_rules() -> None:
    spec = Cron("30 2 * * *", "Europe/Berlin")
    assert fires(spec, local(BERLIN, 2026, 3, 28, 12, 0), 2, BERLIN) == [
        "03-29 03:00 CEST",
        "03-30 02:30 CEST",
    ]
    assert fires(spec, local(BERLIN, 2026, 10, 24, 12, 0), 2, BERLIN) == [
        "10-25 02:30 CEST",
        "10-26 02:30 CET",
    ]


def test_a_frequent_cron_collapses_the_skipped_hour_into_one_run() -> None:
    spec = Cron("*/20 * * * *", "Europe/Berlin")
    assert fires(spec, local(BERLIN, 2026, 3, 29, 1, 15), 5, BERLIN) == [
        "03-29 01:20 CET",
        "03-29 01:40 CET",
        "03-29 03:00 CEST",
        "03-29 03:20 CEST",
        "03-29 03:40 CEST",
    ]


def test_a_wildcard_hour_runs_in_both_passes_of_the_repeated_hour() -> None:
    spec = Cron("*/20 * * * *", "Europe/Berlin")
    assert fires(spec, local(BERLIN, 2026, 10, 25, 1, 50), 8, BERLIN) == [
        "10-25 02:00 CEST",
        "10-25 02:20 CEST",
        "10-25 02:40 CEST",
        "10-25 02:00 CET",
        "10-25 02:20 CET",
        "10-25 02:40 CET",
        "10-25 03:00 CET",
        "10-25 03:20 CET",
    ]
    hourly = Cron("@hourly", "Europe/Berlin")
    runs = [hourly.next_after(local(BERLIN, 2026, 10, 25, 0, 30))]
    for _ in range(4):
        runs.append(hourly.next_after(runs[-1]))
    # Five runs exactly one hour apart: elapsed time, through the repeated hour.
    assert [b - a for a, b in itertools.pairwise(runs)] == [3600.0] * 4


def test_starting_inside_the_repeated_hour_finds_the_second_pass() -> None:
    spec = Cron("*/20 * * * *", "Europe/Berlin")
    second_0210 = local(BERLIN, 2026, 10, 25, 2, 10, fold=1)
    assert fires(spec, second_0210, 2, BERLIN) == ["10-25 02:20 CET", "10-25 02:40 CET"]
    fixed = Cron("30 2 * * *", "Europe/Berlin")
    assert fires(fixed, second_0210, 1, BERLIN) == ["10-26 02:30 CET"]


def test_cron_in_utc_by_default_and_aliases() -> None:
    spec = Cron("@daily")
    assert spec.timezone == "UTC"
    assert spec.describe() == "cron '@daily' UTC"
    assert spec.next_after(dt.datetime(2026, 5, 1, 13, tzinfo=UTC).timestamp()) == (
        dt.datetime(2026, 5, 2, tzinfo=UTC).timestamp()
    )
    weekdays = Cron("0 9 * * mon-fri", "Europe/Berlin")
    saturday = local(BERLIN, 2026, 5, 2, 12, 0)
    assert fires(weekdays, saturday, 2, BERLIN) == ["05-04 09:00 CEST", "05-05 09:00 CEST"]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "61 * * * *"),
        ("* * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("every day", "expected 5 fields"),
        ("", "non-empty"),
        ("0 0 * * funday", "funday"),
    ],
)
def test_an_invalid_cron_expression_is_refused_with_the_problem(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match="cron expression") as info:
        Cron(expression)
    assert problem in str(info.value)


def test_a_cron_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        Cron("0 0 30 2 *").next_after(0.0)


@pytest.mark.parametrize("zone", ["Europe/Berln", "Mars/Olympus", "", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(ScheduleError, match="time zone"):
        Cron("* * * * *", zone)


def test_a_fixed_offset_is_refused_because_it_has_no_daylight_saving_rules() -> None:
    with pytest.raises(ScheduleError, match="IANA"):
        Cron("* * * * *", dt.timezone(dt.timedelta(hours=2)))
    assert Cron("* * * * *", dt.timezone.utc).timezone == "UTC"
    assert Cron("* * * * *", BERLIN).timezone == "Europe/Berlin"


@pytest.mark.parametrize("value", ["25:00", "12:60", "7am", "12", "12:00:61", 1230])
def test_an_invalid_daily_time_is_refused(value: object) -> None:
    with pytest.raises(ScheduleError, match="daily time"):
        Cron.daily_at(value, "UTC")  # type: ignore[arg-type]


# -- intervals and one-shots ------------------------------------------------------


def test_every_counts_from_its_anchor() -> None:
    spec = Every(10.0, anchor=1000.0)
    assert spec.next_after(999.0) == 1010.0
    assert spec.next_after(1010.0) == 1020.0
    assert spec.next_after(1015.5) == 1020.0
    assert spec.due(1010.0, 1009.0, 5) == ([], 0)
    assert spec.due(1010.0, 1045.0, 5) == ([1010.0, 1020.0, 1030.0, 1040.0], 4)
    assert spec.due(1010.0, 1045.0, 2) == ([1030.0, 1040.0], 4)
    # A year of missed one-second ticks is computed, not walked.
    yearly = Every(1.0, anchor=0.0)
    ticks, count = yearly.due(1.0, 365 * 86400.0, 3)
    assert ticks == [365 * 86400.0 - 2, 365 * 86400.0 - 1, 365 * 86400.0]
    assert count == 365 * 86400


def test_a_long_downtime_of_a_frequent_cron_is_counted_without_walking_it_all() -> None:
    spec = Cron("* * * * *", "UTC")
    start = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    now = start + 30 * 86400 + 30
    ticks, count = spec.due(start, now, 3)
    assert ticks == [now - 30 - 120, now - 30 - 60, now - 30]
    assert count == pytest.approx(30 * 1440 + 1, rel=0.01)


@pytest.mark.parametrize("value", [0, -1, 0.0001, math.inf, math.nan])
def test_an_invalid_interval_is_refused(value: float) -> None:
    with pytest.raises(ScheduleError, match="interval"):
        Every(interval_seconds(value), anchor=0.0)


@pytest.mark.parametrize("value", ["5", None, True, [1]])
def test_an_interval_must_be_a_number_or_timedelta(value: object) -> None:
    with pytest.raises(ScheduleError, match="number of seconds or a timedelta"):
        interval_seconds(value)
    assert interval_seconds(dt.timedelta(minutes=2)) == 120.0


def test_times_must_be_aware_or_timestamps() -> None:
    with pytest.raises(ScheduleError, match=r"naive datetime .* has no time zone"):
        timestamp(dt.datetime(2026, 1, 1, 12, 0))
    assert timestamp(dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)) == 1767268800.0
    assert timestamp(1767268800) == 1767268800.0
    with pytest.raises(ScheduleError, match="aware datetime or a Unix timestamp"):
        timestamp("2026-01-01")


def test_specs_round_trip_through_their_stored_form() -> None:
    for spec in (
        At(1767268800.5),
        Every(60.0, anchor=1767268800.0),
        Cron.daily_at("02:30", "Europe/Berlin"),
        Cron("*/5 * * * *", "America/New_York"),
    ):
        again = spec_from_dict(spec.to_dict())
        assert again.to_dict() == spec.to_dict()
        assert again.identity() == spec.identity()
    with pytest.raises(ScheduleError, match="unknown kind"):
        spec_from_dict({"kind": "fortnightly"})
    with pytest.raises(ScheduleError, match="invalid"):
        spec_from_dict({"kind": "every"})


def test_missed_policy_names() -> None:
    assert Missed.parse("all") is Missed.ALL
    with pytest.raises(ScheduleError, match="'skip', 'once', 'all'"):
        Missed.parse("some")
