"""A schedule row that cannot be read stops no other schedule, on every database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from jobs_core import Job
from jobs_core.scheduler import Scheduler
from jobs_database import DatabaseDriver


class Beat(Job):
    job_name = "tests.database.Beat"
    queue = "beats"

    def handle(self, payload: Any) -> None:
        return None


BAD_DATA = {
    "not-json": "{ this is not json",
    "nested-too-deep": "[" * 5000 + "]" * 5000,
    "not-an-object": "[1, 2, 3]",
    "numbers-beyond-a-float": (
        '{"v": 1, "spec": {"kind": "every", "seconds": 1e999}, "job": "x", "message": {}}'
    ),
}


def test_unreadable_schedule_rows_are_skipped_and_the_others_fire(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver()
    scheduler = Scheduler(driver)
    scheduler.schedule_every(Beat, 1, name="good")
    schedules = driver.tables.schedules
    now = time.time()
    with driver.engine.begin() as conn:
        for name, data in BAD_DATA.items():
            conn.execute(
                sa.insert(schedules).values(
                    name=name, data=data, next_run_at=now - 5, paused=False, last_tick=None, updated_at=now
                )
            )
    names = {record.name for record in driver.schedules()}
    assert names == {"good", *BAD_DATA}
    assert scheduler.tick(now + 2) >= 1  # the good schedule fires; the bad rows are logged and skipped
    stats = driver.stats("beats")  # due at the scheduler's "now", two seconds ahead of the database's
    assert stats.pending + stats.delayed >= 1
