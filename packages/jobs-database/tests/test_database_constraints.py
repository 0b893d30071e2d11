"""Rows a claim could never act on are refused by the schema, and old ones are failed with a reason.

Rows are written straight into the jobs table over a real connection, as a
foreign program (or a hand-written fix) might.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_database import DatabaseDriver, DatabaseSettings
from jobs_database.engine import create_engine
from jobs_database.schema import SCHEMA_VERSION, Tables, build_tables, upgrade

NAN = math.nan
INF = math.inf


@pytest.fixture
def raw(db_url: str) -> Iterator[tuple[sa.Engine, Tables]]:
    """An engine on the test database, outside the driver, and the tables of the test's prefix."""
    settings = DatabaseSettings.parse(db_url)
    engine = create_engine(settings)
    yield engine, build_tables(settings.table_prefix)
    engine.dispose()


def row(message: Message, **changes: Any) -> dict[str, Any]:
    """The columns of ``message`` as the driver writes them, with ``changes``."""
    values: dict[str, Any] = {
        "id": message.id,
        "queue": message.queue,
        "priority": message.priority,
        "visible_at": message.available_at,
        "state": 0,
        "lease_until": None,
        "unique_until": None,
        "created_at": message.created_at,
        "body": message.encode(),
    }
    values.update(changes)
    return values


def insert(conn: sa.Connection, tables: Tables, values: dict[str, Any]) -> None:
    """A plain INSERT with the values bound as they are (no SQLAlchemy type processing)."""
    names = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    conn.execute(sa.text(f"INSERT INTO {tables.jobs.name} ({names}) VALUES ({params})"), values)


SQLITE_NAN = "SQLite stores NaN as NULL, which here means no expiry"
ANY_BODY = "only a SQLite column holds a value of another type than its own"

#: Each impossible row: what it is, its column values, and the backends where it cannot exist at all.
IMPOSSIBLE: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("unknown state", {"state": 7}, {}),
    ("state -1", {"state": -1}, {}),
    ("reserved without a lease end", {"state": 1, "receipt": "x:1"}, {}),
    ("reserved with a NaN lease end", {"state": 1, "receipt": "x:1", "lease_until": NAN}, {}),
    ("reserved with an endless lease", {"state": 1, "receipt": "x:1", "lease_until": INF}, {}),
    ("priority beyond 32 bits", {"priority": 2**31}, {}),
    ("priority below 32 bits", {"priority": -(2**31) - 1}, {}),
    ("text priority", {"priority": "high"}, {}),
    ("NaN visible_at", {"visible_at": NAN}, {}),
    ("infinite visible_at", {"visible_at": INF}, {}),
    ("negative visible_at", {"visible_at": -1.0}, {}),
    ("visible_at after the year 9999", {"visible_at": 1e13}, {}),
    ("NaN created_at", {"created_at": NAN}, {}),
    ("NaN unique_until", {"unique_key": "k", "unique_until": NAN}, {"sqlite": SQLITE_NAN}),
    ("text body", {"body": "not bytes"}, {"postgresql": ANY_BODY, "mariadb": ANY_BODY}),
]


@pytest.mark.parametrize(
    ("case", "changes", "cannot_exist"), IMPOSSIBLE, ids=[case for case, _, _ in IMPOSSIBLE]
)
def test_the_schema_refuses_a_row_no_claim_could_act_on(
    backend: str,
    make_driver: Callable[..., DatabaseDriver],
    raw: tuple[sa.Engine, Tables],
    case: str,
    changes: dict[str, Any],
    cannot_exist: dict[str, str],
) -> None:
    if backend in cannot_exist:
        pytest.skip(f"{case}: {cannot_exist[backend]}")
    driver = make_driver()
    driver.upgrade_schema()
    engine, tables = raw
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        insert(conn, tables, row(Message(name="bad", queue="q"), **changes))
    # The same row with sound values is stored and claimed: the refusal was the value's.
    with engine.begin() as conn:
        insert(conn, tables, row(Message(name="good", queue="q")))
    assert driver.stats("q").pending == 1
    [delivery] = driver.reserve(["q"], limit=10)
    assert delivery.message.name == "good"


def test_the_constraint_named_in_the_error_says_which_rule_was_broken(
    make_driver: Callable[..., DatabaseDriver], raw: tuple[sa.Engine, Tables]
) -> None:
    make_driver().upgrade_schema()
    engine, tables = raw
    for changes, constraint in (
        ({"state": 7}, "jobs_state"),
        ({"state": 1}, "jobs_state"),
        ({"visible_at": 1e13}, "jobs_visible_at"),
        ({"created_at": -5.0}, "jobs_created_at"),
    ):
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
            insert(conn, tables, row(Message(name="bad", queue="q"), **changes))
        assert f"{tables.prefix}{constraint}" in str(caught.value.orig)


def _old_rows(backend: str) -> list[tuple[str, dict[str, Any], str]]:
    """Rows a version 4 schema accepted that no claim acts on, and the reason each must be failed with."""
    rows = [
        ("state 7", {"state": 7}, "state 7 (allowed: 0 waiting, 1 reserved)"),
        ("no lease", {"state": 1, "receipt": "x:1"}, "reserved with lease_until None"),
        ("far future", {"visible_at": 1e13}, "visible_at 10000000000000.0 (allowed: 0 to 253402300799)"),
    ]
    if backend == "postgresql":
        rows.append(("nan", {"visible_at": NAN}, "visible_at nan"))
    if backend == "sqlite":
        rows.append(("text priority", {"priority": "high"}, "priority 'high' (allowed: -2147483648 to"))
        rows.append(("text body", {"body": "not bytes"}, "body of type str (allowed: bytes)"))
    return rows


def test_upgrading_moves_impossible_rows_to_the_failed_store_with_the_reason(
    backend: str, db_url: str, raw: tuple[sa.Engine, Tables]
) -> None:
    engine, tables = raw
    assert upgrade(engine, tables, target=4) == (0, 4)
    good = Message(name="good", payload={"n": 1}, queue="q")
    old = _old_rows(backend)
    stuck = {name: Message(name=name, payload={"stuck": name}, queue="q") for name, _, _ in old}
    with engine.begin() as conn:
        insert(conn, tables, row(good))
        for name, changes, _ in old:
            insert(conn, tables, row(stuck[name], **changes))

    driver = DatabaseDriver(db_url)
    try:
        assert driver.upgrade_schema() == (4, SCHEMA_VERSION)
        stats = driver.stats("q")
        assert (stats.pending, stats.delayed, stats.reserved, stats.failed) == (1, 0, 0, len(old))
        failed = {entry.id: entry for entry in driver.failed(limit=100)}
        for name, _, reason in old:
            entry = failed[stuck[name].id]
            assert entry.queue == "q"
            assert entry.error.startswith("impossible row in the jobs table")
            assert reason in entry.error
            if name != "text body":  # the body is a sound message: it can run once put back
                assert (entry.name, entry.payload) == (name, {"stuck": name})
        [delivery] = driver.reserve(["q"], limit=10)
        assert delivery.message.name == "good"
        driver.ack(delivery)
        # Put back, a failed row gets sound columns from its message and runs.
        assert driver.retry_failed(stuck["state 7"].id)
        [again] = driver.reserve(["q"], limit=10)
        assert again.message.payload == {"stuck": "state 7"}
    finally:
        driver.close()


def test_upgrading_keeps_every_sound_row_and_its_lease(
    backend: str, db_url: str, raw: tuple[sa.Engine, Tables]
) -> None:
    engine, tables = raw
    upgrade(engine, tables, target=4)
    now = time.time()
    waiting = [Message(name=f"w{i}", queue="q", priority=i) for i in range(3)]
    leased = Message(name="leased", queue="q")
    with engine.begin() as conn:
        for message in waiting:
            insert(conn, tables, row(message))
        insert(conn, tables, row(leased, state=1, receipt="tok:9", lease_until=now + 300))
    driver = DatabaseDriver(db_url)
    try:
        driver.upgrade_schema()
        assert driver.stats("q").reserved == 1
        assert driver.failed() == []
        got = driver.reserve(["q"], limit=10)
        assert [d.message.name for d in got] == ["w2", "w1", "w0"]
    finally:
        driver.close()


def test_upgrading_to_version_6_keeps_one_job_per_id_and_refuses_no_enqueue(
    db_url: str, raw: tuple[sa.Engine, Tables]
) -> None:
    """Rows repeating an id (stored before ids were checked): the earliest is the job."""
    engine, tables = raw
    assert upgrade(engine, tables, target=5) == (0, 5)
    first = Message(name="first", payload=1, queue="q")
    other = Message(name="other", payload=2, queue="q")
    with engine.begin() as conn:
        insert(conn, tables, row(first))
        insert(conn, tables, row(first.replace(payload="repeat")))
        insert(conn, tables, row(other))
        insert(conn, tables, row(first.replace(payload="again")))
    driver = DatabaseDriver(db_url)
    try:
        assert driver.upgrade_schema() == (5, SCHEMA_VERSION)
        assert driver.enqueue([first.replace(payload="later")]) == [first.id]
        got = driver.reserve(["q"], limit=10, lease=30)
        assert [(d.id, d.message.payload) for d in got] == [(first.id, 1), (other.id, 2)]
    finally:
        driver.close()
