"""Fixtures: a jobs app on each backend (memory, SQLite, PostgreSQL, MariaDB, Kafka) and failed jobs.

PostgreSQL and MariaDB come from ``JOBS_TEST_POSTGRESQL_URL`` and
``JOBS_TEST_MARIADB_URL`` (defaults: the local test servers), with a fresh
table prefix per test, dropped afterwards; Kafka is a Tansu broker started
for the test (or ``JOBS_KAFKA_BOOTSTRAP``), with fresh topics. A missing
service skips its tests on a developer machine and fails them under ``CI``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from jobs_core import JobsApp
from jobs_dashboard import DashboardSettings, create_app
from jobs_dashboard_test_jobs import TEST_JOBS, explode
from starlette.testclient import TestClient

SERVERS = {
    "postgresql": os.environ.get(
        "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("JOBS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
POSTGRESQL_URL = SERVERS["postgresql"]

#: A payload that would run a script if the dashboard did not escape it.
XSS = (
    "<script>window.__jobs_xss = 1; document.title = 'owned'</script>"
    '<img src=x onerror="window.__jobs_xss=2">'
)


def server_error(backend: str) -> str | None:
    """``None`` if the database server of ``backend`` answers, else why not."""
    import sqlalchemy as sa

    engine = sa.create_engine(SERVERS[backend], connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()


def unavailable(message: str) -> None:
    """Skip the test, or fail it under CI (a missing service is a failure there)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def with_prefix(url: str, prefix: str) -> str:
    return url + ("&" if "?" in url else "?") + f"table_prefix={prefix}"


def drop_prefix(backend: str, prefix: str) -> None:
    import sqlalchemy as sa
    from jobs_database.schema import build_tables, drop_all

    engine = sa.create_engine(SERVERS[backend])
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


@contextlib.contextmanager
def kafka_url() -> Iterator[str]:
    """A ``kafka://`` URL on a Tansu broker of its own (or ``JOBS_KAFKA_BOOTSTRAP``), fresh topics."""
    try:
        from jobs_kafka.testing.broker import FAST_TEST_SETTINGS, test_bootstrap
    except ImportError as exc:
        unavailable(f"jobs-kafka is not installed: {exc}")
        raise
    with test_bootstrap() as bootstrap:
        topics = f"d{uuid.uuid4().hex[:8]}."
        yield f"kafka://{bootstrap}?" + urlencode(
            {**FAST_TEST_SETTINGS, "topic_prefix": topics, "partitions": 1}
        )


@contextlib.contextmanager
def fresh_backend(backend: str, folder: Path) -> Iterator[str]:
    """A fresh URL of ``backend``: ``memory``, ``sqlite``, ``postgresql`` or ``mariadb`` (their tables
    dropped after), or ``kafka``."""
    if backend == "memory":
        yield f"memory://dash-{uuid.uuid4().hex[:8]}"
    elif backend == "sqlite":
        yield f"sqlite:///{folder / 'jobs.db'}"
    elif backend in SERVERS:
        error = server_error(backend)
        if error is not None:
            unavailable(f"{backend} unreachable at {SERVERS[backend]}: {error}")
        prefix = f"d{uuid.uuid4().hex[:10]}_"
        yield with_prefix(SERVERS[backend], prefix)
        drop_prefix(backend, prefix)
    elif backend == "kafka":
        with kafka_url() as url:
            yield url
    else:
        raise ValueError(backend)


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh backend URL of ``request.param`` (default ``sqlite``)."""
    with fresh_backend(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture
def jobs(backend_url: str) -> Iterator[JobsApp]:
    """A jobs app on the backend, with the test jobs registered."""
    app = JobsApp(backend_url, load_plugins=False)
    for target in TEST_JOBS:
        app.register(target)
    yield app
    app.close()


@pytest.fixture
def client(jobs: JobsApp) -> Iterator[TestClient]:
    """A TestClient of the dashboard over ``jobs`` (as from localhost: no token needed)."""
    application = create_app(jobs, DashboardSettings(sample_interval=3600))
    with TestClient(application, base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture
def fail_job(jobs: JobsApp) -> Callable[..., str]:
    """Dispatch a job that raises and run it once: it lands in the failed store. Returns its id."""

    def make(payload: Any = None, queue: str = "emails", message: str = "mail server said no") -> str:
        job_id = jobs.dispatch(explode.on_queue(queue), {"data": payload, "message": message})
        assert job_id is not None
        assert jobs.work(queue, max_jobs=1) == 1
        assert any(entry.id == job_id for entry in jobs.failed_jobs(limit=500, queue=queue))
        return job_id

    return make
