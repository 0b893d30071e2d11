"""``await Jobs.adispatch(..., transaction=...)`` with SQLAlchemy's async objects.

What an ``async def`` web handler does: open an ``AsyncSession`` (or an
``AsyncConnection``), write its own rows, dispatch jobs in the same
transaction, commit or roll back. The jobs exist if and only if the
transaction commits, on SQLite (aiosqlite), PostgreSQL (psycopg's async mode)
and MariaDB (asyncmy). A sync ``dispatch`` given an async object says to use
``adispatch`` instead of failing inside SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import JobsApp, job
from jobs_core.errors import ConfigurationError

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mariadb": "asyncmy"}


def _need(module: str) -> None:
    """Import ``module``; skip without it, except under CI (which installs it)."""
    if os.environ.get("CI"):
        __import__(module)
    else:
        pytest.importorskip(module)


_need("greenlet")
from sqlalchemy.ext.asyncio import (  # noqa: E402
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)


@job(name="orders.ship", queue="ship")
def ship(payload: dict[str, Any]) -> None:
    return None


@pytest.fixture
def app(db_url: str) -> Iterator[JobsApp]:
    """The app of the web service; the jobs tables exist (as after ``jobs db upgrade``)."""
    with JobsApp(db_url, load_plugins=False) as app:
        app.driver.upgrade_schema()  # type: ignore[attr-defined]
        yield app


def _async_url(db_url: str, backend: str) -> sa.URL:
    _need(ASYNC_DRIVERS[backend])
    url = sa.engine.make_url(db_url.split("?", 1)[0])
    return url.set(
        drivername={"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}.get(
            backend, "mysql+asyncmy"
        )
    )


@pytest.fixture
def async_url(db_url: str, backend: str, app: JobsApp) -> sa.URL:
    """The same database through the async driver a web service would use."""
    return _async_url(db_url, backend)


async def _orders(engine: AsyncEngine, app: JobsApp) -> sa.Table:
    name = f"{app.driver.settings.table_prefix}orders"  # type: ignore[attr-defined]
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    async with engine.begin() as conn:
        await conn.run_sync(table.create, checkfirst=True)
    return table


async def _drop(engine: AsyncEngine, table: sa.Table) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(table.drop, checkfirst=True)


def test_a_handler_with_an_async_session_commits_or_rolls_back_its_jobs(
    app: JobsApp, async_url: sa.URL
) -> None:
    async def handler(engine: AsyncEngine, orders: sa.Table, order: int, fail: bool) -> str | None:
        async with AsyncSession(engine) as session:
            async with session.begin():
                await session.execute(sa.insert(orders).values(id=order))
                job_id = await app.adispatch(ship, {"order": order}, transaction=session)
                if fail:
                    raise LookupError("payment declined")
            return job_id

    async def scenario() -> str | None:
        engine = create_async_engine(async_url)
        orders = await _orders(engine, app)
        try:
            with pytest.raises(LookupError):
                await handler(engine, orders, 1, fail=True)
            return await handler(engine, orders, 2, fail=False)
        finally:
            await _drop(engine, orders)
            await engine.dispose()

    committed = asyncio.run(scenario())
    assert app.stats("ship")["pending"] == 1
    seen: list[str] = []
    app.listen("job.processed", lambda event: seen.append(event.job_id))
    assert app.work("ship") == 1
    assert seen == [committed]


def test_an_async_connection_takes_a_batch_in_its_transaction(app: JobsApp, async_url: sa.URL) -> None:
    async def scenario() -> list[str | None]:
        engine = create_async_engine(async_url)
        conn: AsyncConnection
        try:
            async with engine.connect() as conn:
                await conn.begin()
                dropped = await app.adispatch_many(ship, [{"order": n} for n in range(150)], transaction=conn)
                assert len(dropped) == 150
                await conn.rollback()
            async with engine.begin() as conn:
                ids = await app.adispatch_many(ship, [{"order": n} for n in range(150)], transaction=conn)
                unique = await app.adispatch(ship.unique("order-7"), {"order": 7}, transaction=conn)
                duplicate = await app.adispatch(ship.unique("order-7"), {"order": 7}, transaction=conn)
        finally:
            await engine.dispose()
        assert unique is not None and duplicate is None
        return ids

    ids = asyncio.run(scenario())
    assert len(set(ids)) == 150
    assert app.stats("ship")["pending"] == 151
    assert app.work("ship") == 151


def test_sync_dispatch_given_an_async_session_says_to_await_adispatch(
    app: JobsApp, async_url: sa.URL
) -> None:
    async def scenario() -> None:
        engine = create_async_engine(async_url)
        try:
            async with AsyncSession(engine) as session, session.begin():
                with pytest.raises(ConfigurationError, match=r"AsyncSession.*await Jobs\.adispatch\("):
                    app.dispatch(ship, {"order": 1}, transaction=session)
                with pytest.raises(ConfigurationError, match=r"await Jobs\.adispatch_many\("):
                    app.dispatch_many(ship, [{"order": 1}], transaction=session)
            async with engine.connect() as conn:
                with pytest.raises(ConfigurationError, match=r"AsyncConnection"):
                    app.dispatch(ship, {"order": 1}, transaction=conn)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert app.stats("ship")["pending"] == 0
