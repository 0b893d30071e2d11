"""Schedules: save, list, remove, pause, claim a tick exactly once, advance ``next_run_at``."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.message import ScheduleRecord
from jobs_core.testing.plugin import DriverFactory

pytestmark = pytest.mark.jobs_requires(Capability.SCHEDULES)

#: A next-run time with a fractional part that must survive storage exactly.
NEXT_RUN = 1_795_978_165.680647


@pytest.fixture
def name(jobs_queue: str) -> str:
    """A schedule name no other test uses (the backend may be shared)."""
    return f"sched-{jobs_queue}"


def record(
    name: str,
    *,
    data: dict[str, Any] | None = None,
    next_run_at: float | None = None,
    paused: bool = False,
    last_tick: float | None = None,
    updated_at: float = NEXT_RUN - 3600,
) -> ScheduleRecord:
    return ScheduleRecord(
        name=name,
        data={"job": "conformance.job", "every": 60} if data is None else data,
        next_run_at=next_run_at,
        paused=paused,
        last_tick=last_tick,
        updated_at=updated_at,
    )


def stored(driver: Driver, name: str) -> ScheduleRecord | None:
    found = [r for r in driver.schedules() if r.name == name]
    assert len(found) <= 1, f"schedules() lists {name!r} {len(found)} times"
    return found[0] if found else None


def test_a_saved_schedule_is_listed(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN, updated_at=1_700_000_000.5))
    got = stored(jobs_driver, name)
    assert got is not None
    assert got.data == {"job": "conformance.job", "every": 60}
    assert got.next_run_at == NEXT_RUN
    assert got.paused is False
    assert got.last_tick is None
    assert got.updated_at == pytest.approx(1_700_000_000.5, abs=1e-3)


def test_another_driver_on_the_backend_sees_the_schedule(
    jobs_driver_factory: DriverFactory, name: str
) -> None:
    first, second = jobs_driver_factory(), jobs_driver_factory()
    first.save_schedule(record(name, next_run_at=NEXT_RUN))
    got = stored(second, name)
    assert got is not None and got.next_run_at == NEXT_RUN


def test_data_round_trips_as_json(jobs_driver: Driver, name: str) -> None:
    data = {
        "v": 1,
        "spec": {"kind": "cron", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"},
        "payload": {"text": "grüße ✓ 日本", "list": [1, 2.5, None, True, False], "nested": {"a": {"b": []}}},
        "delay": 0.25,
    }
    jobs_driver.save_schedule(record(name, data=data, next_run_at=NEXT_RUN))
    got = stored(jobs_driver, name)
    assert got is not None
    assert dict(got.data) == data


def test_saving_the_same_name_replaces_the_schedule(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, data={"version": 1}, next_run_at=NEXT_RUN))
    jobs_driver.save_schedule(record(name, data={"version": 2}, next_run_at=NEXT_RUN + 60, paused=True))
    got = stored(jobs_driver, name)
    assert got is not None
    assert got.data == {"version": 2}
    assert got.next_run_at == NEXT_RUN + 60
    assert got.paused is True


def test_the_paused_flag_round_trips(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN, paused=True))
    got = stored(jobs_driver, name)
    assert got is not None and got.paused is True
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN, paused=False))
    got = stored(jobs_driver, name)
    assert got is not None and got.paused is False


def test_a_schedule_without_next_run_round_trips(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=None))
    got = stored(jobs_driver, name)
    assert got is not None and got.next_run_at is None


def test_schedules_are_listed_by_name(jobs_driver: Driver, name: str) -> None:
    names = [f"{name}-c", f"{name}-a", f"{name}-b"]
    for each in names:
        jobs_driver.save_schedule(record(each, next_run_at=NEXT_RUN))
    listed = [r.name for r in jobs_driver.schedules() if r.name.startswith(name)]
    assert listed == sorted(names)


def test_remove_deletes_and_reports(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.remove_schedule(name) is True
    assert stored(jobs_driver, name) is None
    assert jobs_driver.remove_schedule(name) is False


def test_claim_tick_is_a_compare_and_set(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.claim_tick(name, NEXT_RUN) is True
    assert jobs_driver.claim_tick(name, NEXT_RUN) is False, "the same tick was claimed twice"
    assert jobs_driver.claim_tick(name, NEXT_RUN - 60) is False, "an earlier tick was claimed"
    got = stored(jobs_driver, name)
    assert got is not None and got.last_tick == NEXT_RUN
    assert jobs_driver.claim_tick(name, NEXT_RUN + 60) is True
    got = stored(jobs_driver, name)
    assert got is not None and got.last_tick == NEXT_RUN + 60


def test_claiming_a_missing_schedule_returns_false(jobs_driver: Driver, name: str) -> None:
    assert jobs_driver.claim_tick(name, NEXT_RUN) is False
    assert stored(jobs_driver, name) is None, "claim_tick created a schedule"


def test_claims_are_separate_per_schedule(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(f"{name}-a", next_run_at=NEXT_RUN))
    jobs_driver.save_schedule(record(f"{name}-b", next_run_at=NEXT_RUN))
    assert jobs_driver.claim_tick(f"{name}-a", NEXT_RUN) is True
    assert jobs_driver.claim_tick(f"{name}-b", NEXT_RUN) is True


def test_resaving_keeps_the_claimed_tick(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.claim_tick(name, NEXT_RUN)
    jobs_driver.save_schedule(record(name, data={"changed": True}, next_run_at=NEXT_RUN + 60))
    got = stored(jobs_driver, name)
    assert got is not None
    assert got.last_tick == NEXT_RUN, "re-saving without last_tick lost the claimed tick"
    assert got.data == {"changed": True}
    assert jobs_driver.claim_tick(name, NEXT_RUN) is False, "a claimed tick became claimable again"


def test_saving_an_explicit_last_tick_sets_it(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN, last_tick=NEXT_RUN))
    assert jobs_driver.claim_tick(name, NEXT_RUN) is False
    got = stored(jobs_driver, name)
    assert got is not None and got.last_tick == NEXT_RUN


def test_a_removed_and_recreated_schedule_starts_unclaimed(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.claim_tick(name, NEXT_RUN)
    assert jobs_driver.remove_schedule(name)
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.claim_tick(name, NEXT_RUN) is True


def test_each_tick_is_claimed_exactly_once_by_concurrent_drivers(
    jobs_driver_factory: DriverFactory, name: str
) -> None:
    contenders, ticks = 6, 40
    drivers = [jobs_driver_factory() for _ in range(contenders)]
    drivers[0].save_schedule(record(name, next_run_at=NEXT_RUN))
    start = threading.Barrier(contenders)
    wins: list[list[float]] = [[] for _ in range(contenders)]
    errors: list[BaseException] = []

    def contend(index: int) -> None:
        try:
            start.wait()
            for n in range(ticks):
                tick = NEXT_RUN + n
                if drivers[index].claim_tick(name, tick):
                    wins[index].append(tick)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    claimed = Counter(tick for won in wins for tick in won)
    twice = sorted(tick for tick, count in claimed.items() if count > 1)
    assert not twice, f"ticks claimed more than once: {twice}"
    # Every contender tries the ticks in order, so each tick is won by someone.
    assert sorted(claimed) == [NEXT_RUN + n for n in range(ticks)]


def test_advance_schedule_moves_next_run_when_expected(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, data={"keep": 1}, next_run_at=NEXT_RUN, paused=True))
    assert jobs_driver.claim_tick(name, NEXT_RUN)
    assert jobs_driver.advance_schedule(name, NEXT_RUN, NEXT_RUN + 60) is True
    got = stored(jobs_driver, name)
    assert got is not None
    assert got.next_run_at == NEXT_RUN + 60
    assert (got.data, got.paused, got.last_tick) == ({"keep": 1}, True, NEXT_RUN)


def test_advance_schedule_refuses_a_stale_expectation(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.advance_schedule(name, NEXT_RUN - 60, NEXT_RUN + 60) is False
    got = stored(jobs_driver, name)
    assert got is not None and got.next_run_at == NEXT_RUN


def test_advance_schedule_can_end_a_schedule(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN))
    assert jobs_driver.advance_schedule(name, NEXT_RUN, None) is True
    got = stored(jobs_driver, name)
    assert got is not None and got.next_run_at is None
    assert jobs_driver.advance_schedule(name, None, NEXT_RUN) is True


def test_advance_schedule_of_a_missing_schedule_returns_false(jobs_driver: Driver, name: str) -> None:
    assert jobs_driver.advance_schedule(name, None, NEXT_RUN) is False
    assert stored(jobs_driver, name) is None


def test_a_saved_schedule_is_a_copy(jobs_driver: Driver, name: str) -> None:
    """Changing the record's data after saving it changes nothing stored."""
    data: dict[str, Any] = {"job": "conformance.job", "every": 60}
    jobs_driver.save_schedule(record(name, data=data, next_run_at=NEXT_RUN))
    data["every"] = 1
    got = stored(jobs_driver, name)
    assert got is not None and got.data == {"job": "conformance.job", "every": 60}


def test_advance_schedule_records_when_it_moved(jobs_driver: Driver, name: str) -> None:
    jobs_driver.save_schedule(record(name, next_run_at=NEXT_RUN, updated_at=1_700_000_000.0))
    before = time.time()
    assert jobs_driver.advance_schedule(name, NEXT_RUN, NEXT_RUN + 60) is True
    got = stored(jobs_driver, name)
    assert got is not None and before - 1.0 <= got.updated_at <= time.time() + 1.0
