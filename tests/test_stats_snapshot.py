"""``jobs stats`` under load: its total row is the sum of its rows, and each row is one moment.

A worker drains jobs (each dispatching a follow-up on a second queue) while
``jobs stats --json`` is read again and again, as someone watching a busy
system would. Every report must add up: the total equals the sum of the
queues, and the jobs of the first queue — which only move between states —
are all counted exactly once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobs_core import Jobs, JobsApp, job
from jobs_core.cli import cli

SERVERS = {
    "postgresql": os.environ.get(
        "JOBS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("JOBS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
JOBS = 300


@job(name="snapshot.first", queue="first", max_retries=0)
def first(payload: int) -> None:
    time.sleep(0.002)
    Jobs.dispatch(second, payload)
    if payload % 7 == 0:
        raise ValueError("every seventh fails")


@job(name="snapshot.second", queue="second")
def second(payload: int) -> None:
    return None


def _server_error(url: str) -> str | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind: str = request.param
    if kind == "memory":
        yield f"memory://snapshot{uuid.uuid4().hex[:8]}"
        return
    pytest.importorskip("jobs_database")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    error = _server_error(SERVERS[kind])
    if error is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{kind} unavailable: {error}")
        pytest.skip(f"{kind} unavailable: {error}")
    prefix = f"s{uuid.uuid4().hex[:10]}_"
    yield f"{SERVERS[kind]}?table_prefix={prefix}"
    import sqlalchemy as sa
    from jobs_database.schema import build_tables, drop_all

    engine = sa.create_engine(SERVERS[kind])
    try:
        drop_all(engine, build_tables(prefix))
    finally:
        engine.dispose()


def test_every_report_adds_up_while_a_worker_drains_the_queues(url: str) -> None:
    from jobs_core.facade import set_default_app

    with JobsApp(url, load_plugins=False) as app:
        app.dispatch_many(first, list(range(JOBS)))
        previous = set_default_app(app)  # jobs dispatch their follow-ups to the same backend
        worker = app.worker(
            ["first", "second"], concurrency=4, stop_when_empty=True, install_signal_handlers=False
        )
        thread = threading.Thread(target=worker.run)
        thread.start()
        reports = []
        try:
            while thread.is_alive() or not reports:
                result = CliRunner().invoke(cli, ["stats", "--url", url, "--json"], catch_exceptions=False)
                assert result.exit_code == 0, result.output
                reports.append(json.loads(result.output))
        finally:
            thread.join(timeout=120)
            set_default_app(previous)
    assert len(reports) >= 3, "the worker finished before the stats were read under load"
    for report in reports:
        queues, total = report["queues"], report["total"]
        for key, value in total.items():
            assert value == sum(counts[key] for counts in queues.values()), report
        if "first" in queues:
            assert sum(queues["first"].values()) == JOBS, report
    final = reports[-1]["queues"]
    assert final["first"]["completed"] + final["first"]["failed"] == JOBS
