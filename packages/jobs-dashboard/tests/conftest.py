"""Fixtures: a jobs app on each backend (memory, SQLite, PostgreSQL), with failed jobs to show.

PostgreSQL comes from ``JOBS_TEST_POSTGRESQL_URL`` (default: the local test
server) with a fresh table prefix per test, dropped afterwards. When it is
unreachable its tests are skipped on a developer machine and fail under
``CI``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs_core import JobsApp
from jobs_dashboard_test_jobs import TEST_JOBS, explode

POSTGRESQL_URL = os.environ.get(
    "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: A payload that would run a script if the dashboard did not escape it.
XSS = (
    "<script>window.__jobs_xss = 1; document.title = 'owned'</script>"
    '<img src=x onerror="window.__jobs_xss=2">'
)


def postgresql_error() -> str | None:
    """``None`` if the PostgreSQL server answers, else why not."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRESQL_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()


def require_postgresql() -> None:
    """Skip (or fail under CI) when PostgreSQL is unreachable."""
    error = postgresql_error()
    if error is None:
        return
    message = f"PostgreSQL unreachable at {POSTGRESQL_URL}: {error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def with_prefix(url: str, prefix: str) -> str:
    return url + ("&" if "?" in url else "?") + f"table_prefix={prefix}"


def drop_prefix(prefix: str) -> None:
    import sqlalchemy as sa
    from jobs_database.schema import build_tables, drop_all

    engine = sa.create_engine(POSTGRESQL_URL)
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_backend(backend: str, folder: Path) -> Iterator[str]:
    """A fresh URL of ``backend``: ``memory``, ``sqlite`` or ``postgresql`` (its tables dropped after)."""
    if backend == "memory":
        yield f"memory://dash-{uuid.uuid4().hex[:8]}"
    elif backend == "sqlite":
        yield f"sqlite:///{folder / 'jobs.db'}"
    elif backend == "postgresql":
        require_postgresql()
        prefix = f"d{uuid.uuid4().hex[:10]}_"
        yield with_prefix(POSTGRESQL_URL, prefix)
        drop_prefix(prefix)
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
def fail_job(jobs: JobsApp) -> Callable[..., str]:
    """Dispatch a job that raises and run it once: it lands in the failed store. Returns its id."""

    def make(payload: Any = None, queue: str = "emails", message: str = "mail server said no") -> str:
        job_id = jobs.dispatch(explode.on_queue(queue), {"data": payload, "message": message})
        assert job_id is not None
        assert jobs.work(queue, max_jobs=1) == 1
        assert any(entry.id == job_id for entry in jobs.failed_jobs(limit=500, queue=queue))
        return job_id

    return make
