"""Fixtures shared by the tests of the whole project."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_core.testing.crash import require_backend

POSTGRESQL_URL = os.environ.get(
    "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    require_backend(POSTGRESQL_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield f"{POSTGRESQL_URL}?table_prefix={prefix}"
    import sqlalchemy as sa
    from jobs_database.schema import build_tables, drop_all

    engine = sa.create_engine(POSTGRESQL_URL)
    drop_all(engine, build_tables(prefix))
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh backend of the database driver: tables of their own on PostgreSQL, or a new SQLite file.

    PostgreSQL down: skipped, or failed under ``CI``.
    """
    yield from _database(request.param, tmp_path)


def _redis() -> Iterator[str]:
    pytest.importorskip("jobs_redis")
    from jobs_redis.testing import delete_prefix, require_server

    require_server(REDIS_URL)
    url = f"{REDIS_URL}?prefix=w{uuid.uuid4().hex[:10]}"
    yield url
    delete_prefix(url)


@pytest.fixture(params=["postgresql", "sqlite", "redis"])
def workflow_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """:func:`database_url`'s backends and Redis (keys under a prefix of their own): drivers with workflows.

    Redis down: skipped, or failed under ``CI``.
    """
    if request.param != "redis":
        yield from _database(request.param, tmp_path)
        return
    yield from _redis()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def listing_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh backend of each driver that lists jobs and workers: memory, SQLite and Redis.

    Redis down: skipped, or failed under ``CI``.
    """
    if request.param == "memory":
        yield f"memory://listing-{uuid.uuid4().hex[:8]}"
    elif request.param == "redis":
        yield from _redis()
    else:
        yield from _database(request.param, tmp_path)
