"""A database that fails mid-operation: the error names the operation that failed.

The tables are dropped behind a driver started with ``create_schema=False``
(so it reports the loss instead of recreating them): every operation then
fails on the backend, and the user's :class:`~jobs_core.errors.BackendError`
starts with the operation's name.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import Delivery, Message, ScheduleRecord
from jobs_core.errors import BackendError
from jobs_database import DatabaseDriver
from jobs_database.schema import drop_all

Call = Callable[[DatabaseDriver, Delivery], object]

#: (the operation named in the error, a call that runs it)
OPERATIONS: list[tuple[str, Call]] = [
    ("enqueue", lambda d, _: d.enqueue([Message(name="a", queue="q")])),
    ("inject_raw", lambda d, _: d.inject_raw("q", b"{}")),
    ("reserve", lambda d, _: d.reserve(["q"])),
    ("ack", lambda d, delivery: d.ack(delivery)),
    ("ack", lambda d, delivery: d.ack_many([delivery])),
    ("retry", lambda d, delivery: d.retry(delivery, 1.0, "boom")),
    ("release", lambda d, delivery: d.release(delivery)),
    ("release", lambda d, delivery: d.release(delivery, delay=5.0)),
    ("extend", lambda d, delivery: d.extend(delivery, 30.0)),
    ("fail", lambda d, delivery: d.fail(delivery, "boom")),
    ("stats", lambda d, _: d.stats()),
    ("stats", lambda d, _: d.stats("q")),
    ("stats", lambda d, _: d.stats_by_queue()),
    ("listing queues", lambda d, _: d.queues()),
    ("listing failed jobs", lambda d, _: d.failed()),
    ("retry_failed", lambda d, _: d.retry_failed("some-id")),
    ("forget_failed", lambda d, _: d.forget_failed("some-id")),
    ("purge", lambda d, _: d.purge("q")),
    ("prune", lambda d, _: d.prune(0.0)),
    ("save_schedule", lambda d, _: d.save_schedule(ScheduleRecord(name="s", data={"every": 60}))),
    ("listing schedules", lambda d, _: d.schedules()),
    ("remove_schedule", lambda d, _: d.remove_schedule("s")),
    ("claim_tick", lambda d, _: d.claim_tick("s", 1.0)),
]


def _names(text: str, operation: str) -> bool:
    """Whether the error ``text`` starts by naming ``operation`` (``"ack: ..."``, ``"ack failed on ..."``)."""
    return re.match(rf"{re.escape(operation)}(: | failed on )", text) is not None


def test_every_operation_on_dropped_tables_raises_a_backend_error_naming_it(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    owner = make_driver()
    owner.enqueue([Message(name="a", queue="q")])
    driver = make_driver(create_schema=False)
    [delivery] = driver.reserve(["q"], lease=60.0)
    drop_all(owner.engine, owner.tables)
    wrong = []
    for operation, call in OPERATIONS:
        with pytest.raises(BackendError) as caught:
            call(driver, delivery)
        if not _names(str(caught.value), operation) or caught.value.retryable:
            wrong.append((operation, str(caught.value)))
    assert not wrong, wrong


def test_a_malformed_message_that_cannot_be_moved_names_the_move(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    owner = make_driver()
    owner.inject_raw("q", b"not a message")
    driver = make_driver(create_schema=False)
    driver.stats()
    owner.tables.failed.drop(owner.engine)
    with pytest.raises(BackendError) as caught:
        driver.reserve(["q"])
    assert _names(str(caught.value), "moving malformed messages to the failed store"), str(caught.value)


def _refuse_min(action: int, _: str | None, function: str | None, *__: Any) -> int:
    """A SQLite authorizer that refuses every call of the ``min`` function."""
    refused = action == sqlite3.SQLITE_FUNCTION and (function or "").lower() == "min"
    return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_waiting_reserve_whose_due_time_lookup_is_refused_names_the_reserve(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    # The claim finds no job, then the wait looks up when the next job comes
    # due; SQLite's authorizer refuses that statement (it alone calls min()).
    make_driver().stats()  # the tables exist, made before the refusal
    driver = make_driver(poll_interval=5.0)

    @sa.event.listens_for(driver.engine, "connect")
    def refuse(dbapi_connection: sqlite3.Connection, _: object) -> None:
        dbapi_connection.set_authorizer(_refuse_min)

    with pytest.raises(BackendError) as caught:
        driver.reserve(["q"], timeout=2.0)
    assert _names(str(caught.value), "reserve"), str(caught.value)
    assert "not authorized" in str(caught.value)
