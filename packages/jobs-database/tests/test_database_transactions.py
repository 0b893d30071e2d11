"""Transactional enqueue: the job exists if and only if the caller's transaction commits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_core.errors import ConfigurationError
from jobs_database import DatabaseDriver
from jobs_database.fairness import TENANT_REFRESH
from sqlalchemy.orm import Session


@pytest.fixture
def app_engine(db_url: str) -> Iterator[sa.Engine]:
    """The application's own engine on the same database (its own pool and connections).

    The jobs tables are created first, as an application's migrations would.
    """
    with DatabaseDriver(db_url) as driver:
        assert isinstance(driver, DatabaseDriver)
        driver.upgrade_schema()
    url = sa.engine.make_url(db_url.split("?", 1)[0])
    if url.drivername.startswith("postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def _orders(engine: sa.Engine, name: str) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    table.create(engine, checkfirst=True)
    return table


def test_rollback_leaves_no_job_and_commit_leaves_one(
    make_driver: Callable[..., DatabaseDriver], app_engine: sa.Engine
) -> None:
    driver = make_driver()
    orders = _orders(app_engine, f"{driver.settings.table_prefix}orders")
    try:
        with app_engine.connect() as conn:
            conn.begin()
            conn.execute(sa.insert(orders).values(id=1))
            [rolled_back] = driver.enqueue_in(conn, [Message(name="ship", payload={"order": 1}, queue="q")])
            assert rolled_back is not None
            conn.rollback()
        assert driver.reserve(["q"]) == []
        assert driver.stats("q").pending == 0

        with app_engine.begin() as conn:
            conn.execute(sa.insert(orders).values(id=2))
            [committed] = driver.enqueue_in(conn, [Message(name="ship", payload={"order": 2}, queue="q")])
        [delivery] = driver.reserve(["q"])
        assert delivery.id == committed
        assert delivery.message.payload == {"order": 2}
        driver.ack(delivery)
    finally:
        orders.drop(app_engine)


def test_an_orm_session_is_accepted_and_its_rollback_discards_the_job(
    make_driver: Callable[..., DatabaseDriver], app_engine: sa.Engine
) -> None:
    driver = make_driver()
    with Session(app_engine) as session:
        driver.enqueue_in(session, [Message(name="a", queue="q")])
        session.rollback()
    assert driver.stats("q").pending == 0
    with Session(app_engine) as session, session.begin():
        [ident] = driver.enqueue_in(session, [Message(name="b", queue="q")])
    [delivery] = driver.reserve(["q"])
    assert delivery.id == ident


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_the_job_is_invisible_to_workers_until_the_commit(
    make_driver: Callable[..., DatabaseDriver], app_engine: sa.Engine
) -> None:
    # (On SQLite a worker's claim waits for the open write transaction instead.)
    driver = make_driver()
    with app_engine.connect() as conn:
        conn.begin()
        driver.enqueue_in(conn, [Message(name="a", queue="q")])
        assert driver.reserve(["q"]) == []
        conn.commit()
    assert len(driver.reserve(["q"], timeout=5)) == 1


def test_a_connection_to_another_kind_of_database_is_refused(
    make_driver: Callable[..., DatabaseDriver], backend: str, tmp_path: object
) -> None:
    driver = make_driver()
    other = sa.create_engine("sqlite://") if backend != "sqlite" else None
    if other is None:
        with pytest.raises(ConfigurationError, match="needs a SQLAlchemy Connection or Session"):
            driver.enqueue_in(object(), [Message(name="a", queue="q")])
        return
    with other.connect() as conn, pytest.raises(ConfigurationError, match="got a sqlite connection"):
        driver.enqueue_in(conn, [Message(name="a", queue="q")])
    other.dispose()


def test_an_enqueue_after_the_callers_own_write_does_not_wait_for_the_callers_lock(
    make_driver: Callable[..., DatabaseDriver], app_engine: sa.Engine
) -> None:
    """What the driver reads while storing (the queues that have tenants) goes through the caller's
    connection: a connection of its own would wait, on SQLite, for the write lock that the caller's
    own transaction holds, until the busy timeout."""
    driver = make_driver()
    orders = _orders(app_engine, f"{driver.settings.table_prefix}orders")
    try:
        time.sleep(TENANT_REFRESH + 0.1)  # the driver's view of the tenants' queues is due a reread
        with app_engine.begin() as conn:
            conn.execute(sa.insert(orders).values(id=1))
            [job_id] = driver.enqueue_in(conn, [Message(name="ship", payload={"order": 1}, queue="q")])
        [delivery] = driver.reserve(["q"])
        assert delivery.id == job_id
        driver.ack(delivery)
    finally:
        orders.drop(app_engine)
