"""Fixtures: one database URL per backend, each test on its own table prefix.

PostgreSQL and MariaDB come from ``JOBS_TEST_POSTGRESQL_URL`` and
``JOBS_TEST_MARIADB_URL`` (defaults: the local test servers). When a server
is unreachable the tests that need it are skipped on a developer machine, and
fail when ``CI`` is set: CI treats a missing service as a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_database import DatabaseDriver
from jobs_database.schema import build_tables, drop_all

SERVER_URLS = {
    "postgresql": os.environ.get(
        "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("JOBS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]

_reachable: dict[str, str | None] = {}


def server_error(backend: str) -> str | None:
    """``None`` if the server answers, else why not (checked once per session)."""
    if backend not in _reachable:
        engine = sa.create_engine(SERVER_URLS[backend], connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            _reachable[backend] = None
        except sa.exc.SQLAlchemyError as exc:
            _reachable[backend] = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        finally:
            engine.dispose()
    return _reachable[backend]


def require_server(backend: str) -> None:
    """Skip (or fail under CI) when the backend's server is unreachable."""
    error = server_error(backend)
    if error is None:
        return
    message = f"{backend} server unreachable at {SERVER_URLS[backend]}: {error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def new_prefix() -> str:
    """A fresh table prefix, so concurrent test runs never share tables."""
    return f"t{uuid.uuid4().hex[:10]}_"


def with_prefix(url: str, prefix: str) -> str:
    return url + ("&" if "?" in url else "?") + f"table_prefix={prefix}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    name: str = request.param
    if name != "sqlite":
        require_server(name)
    return name


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for ``backend`` with a fresh table prefix; the tables are dropped afterwards."""
    prefix = new_prefix()
    base = f"sqlite:///{tmp_path / 'jobs.db'}" if backend == "sqlite" else SERVER_URLS[backend]
    yield with_prefix(base, prefix)
    if backend != "sqlite":
        drop_prefix(base, prefix)


def drop_prefix(server_url: str, prefix: str) -> None:
    """Drop the tables of ``prefix`` on the server at ``server_url``."""
    engine = sa.create_engine(server_url)
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


class Prefixes:
    """Server URLs with fresh table prefixes, whose tables are dropped after the test (:func:`prefixes`)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def url(self, url: str, drop_on: str) -> str:
        """``url`` with a new table prefix, dropped afterwards through ``drop_on`` (a direct server URL)."""
        prefix = new_prefix()
        self.made.append((drop_on, prefix))
        return with_prefix(url, prefix)


@pytest.fixture
def prefixes() -> Iterator[Prefixes]:
    """Fresh table prefixes for URLs built by the test (a pooler in front of a server, say)."""
    made = Prefixes()
    yield made
    for server_url, prefix in made.made:
        drop_prefix(server_url, prefix)


@pytest.fixture
def make_driver(db_url: str) -> Iterator[Callable[..., DatabaseDriver]]:
    """Build drivers on ``db_url``; all are closed after the test."""
    built: list[DatabaseDriver] = []

    def make(**options: Any) -> DatabaseDriver:
        driver = DatabaseDriver(db_url, **options)
        built.append(driver)
        return driver

    yield make
    for driver in built:
        driver.close()


@pytest.fixture
def postgresql_base_url() -> str:
    """The PostgreSQL server URL (no prefix); skips, or fails under CI, if unreachable."""
    require_server("postgresql")
    return SERVER_URLS["postgresql"]


@pytest.fixture
def postgresql_driver(postgresql_base_url: str) -> Iterator[DatabaseDriver]:
    """A driver on the PostgreSQL server with a fresh table prefix; its tables are dropped afterwards."""
    prefix = new_prefix()
    driver = DatabaseDriver(with_prefix(postgresql_base_url, prefix))
    try:
        yield driver
    finally:
        driver.close()
        drop_prefix(postgresql_base_url, prefix)
