"""Status and results on SQLite, PostgreSQL and MariaDB: the ``results`` and
``running`` tables (schema version 7), written with the ack, kept for
``results_ttl`` and pruned.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import Job, JobsApp
from jobs_core.errors import ConfigurationError, JobNotFound
from jobs_core.message import Message
from jobs_database import DatabaseDriver
from jobs_database.schema import SCHEMA_VERSION, upgrade


class Double(Job):
    job_name = "tests.db_status.double"

    def handle(self, payload: Any) -> Any:
        return {"twice": payload * 2, "text": "é ✓ <i>"}


def _count(driver: DatabaseDriver, table: sa.Table) -> int:
    with driver.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def test_a_worker_keeps_results_that_jobs_result_reads(db_url: str) -> None:
    with JobsApp(db_url, load_plugins=False) as app:
        app.register(Double)
        ids = app.dispatch_many(Double, range(20))
        assert app.work("default") == 20
        assert [app.result(ident, timeout=5)["twice"] for ident in ids if ident] == [n * 2 for n in range(20)]
        first = app.status(ids[0] or "")
        assert first.state == "succeeded" and first.name == Double.job_name and first.attempts == 1
        assert first.result == {"twice": 0, "text": "é ✓ <i>"}
        assert app.stats()["completed"] == 20
        driver = app.driver
        assert isinstance(driver, DatabaseDriver)
        assert _count(driver, driver.tables.results) == 20


def test_results_ttl_zero_writes_no_result_rows(db_url: str) -> None:
    with JobsApp(db_url + "&results_ttl=0", load_plugins=False) as app:
        app.register(Double)
        (ident,) = app.dispatch_many(Double, [1])
        assert app.work("default") == 1
        driver = app.driver
        assert isinstance(driver, DatabaseDriver) and driver.results_ttl == 0
        assert _count(driver, driver.tables.results) == 0
        with pytest.raises(JobNotFound, match="results_ttl is 0"):
            app.status(ident or "")
        assert app.stats()["completed"] == 1


def test_a_bad_results_ttl_is_refused(db_url: str) -> None:
    with pytest.raises(ConfigurationError, match="results_ttl must be a number of seconds >= 0, got 'soon'"):
        DatabaseDriver(db_url + "&results_ttl=soon")


def test_results_older_than_the_ttl_are_not_reported_and_are_swept(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver(results_ttl=0.5)
    (ident,) = driver.enqueue([Message(name="n", payload=1, queue="q")])
    (held,) = driver.reserve(["q"], 1, 30.0)
    driver.ack_results([held], ["7"])
    status = driver.job_status(ident or "")
    assert status is not None and status.result == 7
    time.sleep(0.7)
    assert driver.job_status(ident or "") is None
    driver._results_swept_at = 0.0
    driver.enqueue([Message(name="n", payload=2, queue="q")])
    driver.ack_results(driver.reserve(["q"], 1, 30.0), ["8"])
    assert _count(driver, driver.tables.results) == 1  # the old row went, the new one stays


def test_prune_removes_results_and_stale_running_rows(make_driver: Callable[..., DatabaseDriver]) -> None:
    driver = make_driver()
    driver.enqueue([Message(name="n", payload=n, queue="q") for n in range(2)])
    first, second = driver.reserve(["q"], 2, 30.0)
    driver.save_progress(first, None, "w1")
    driver.save_progress(second, None, "w1")
    driver.ack_results([first], ["1"])
    assert _count(driver, driver.tables.running) == 2
    time.sleep(0.05)
    assert driver.prune(0.0) == 1  # the completed job; its result is not counted again
    assert _count(driver, driver.tables.results) == 0
    assert _count(driver, driver.tables.running) == 1  # the running job's row stays
    status = driver.job_status(second.id)
    assert status is not None and status.worker == "w1"


def test_upgrading_from_version_6_adds_the_status_tables(db_url: str) -> None:
    driver = DatabaseDriver(db_url, create_schema=False)
    try:
        upgrade(driver.engine, driver.tables, target=6)
        with pytest.raises(ConfigurationError, match="schema version 6"):
            driver.enqueue([Message(name="n", payload=1, queue="q")])
        assert driver.upgrade_schema() == (6, SCHEMA_VERSION)
        (ident,) = driver.enqueue([Message(name="n", payload=1, queue="q")])
        driver.ack_results(driver.reserve(["q"], 1, 30.0), ['"ok"'])
        status = driver.job_status(ident or "")
        assert status is not None and status.result == "ok"
    finally:
        driver.close()


class Stepper(Job):
    """Reports progress until it is cancelled."""

    job_name = "tests.db_status.stepper"
    max_retries = 3

    def handle(self, payload: Any) -> None:
        n = 0
        while True:
            n += 1
            self.progress(n, 1_000_000, "stepping")
            self.check_cancelled()
            time.sleep(0.005)


def _poll(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_worker_saves_progress_and_stops_a_cancelled_job(db_url: str) -> None:
    with JobsApp(db_url, load_plugins=False) as app:
        app.register(Stepper)
        ident = app.dispatch(Stepper)
        waiting = app.dispatch(Stepper, delay=60)
        assert ident is not None and waiting is not None
        assert app.cancel(waiting) == "removed"
        assert app.status(waiting).state == "cancelled"
        worker = app.worker("default", stop_when_empty=True, install_signal_handlers=False)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        assert _poll(lambda: app.status(ident).progress is not None), "no progress was saved"
        running = app.status(ident)
        assert running.state == "running" and running.worker and running.progress is not None
        assert running.progress.total == 1_000_000 and running.progress.note == "stepping"
        assert app.cancel(ident) == "requested"
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop the cancelled job"
        done = app.status(ident)
        assert done.state == "cancelled" and done.attempts == 1
        assert app.stats() == {"pending": 0, "delayed": 0, "reserved": 0, "completed": 0, "failed": 0}
        assert app.cancel(ident) == "finished"


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_mysql_without_delete_returning_keeps_results_of_the_rows_it_acked(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    """MySQL has no ``DELETE ... RETURNING``: the driver reads which rows its ack left (run on MariaDB)."""
    driver = make_driver()
    driver.enqueue([Message(name="n", payload=n, queue="q") for n in range(3)])
    first, second, third = driver.reserve(["q"], 3, 30.0)
    driver.stats()  # connected: the dialect knows the server
    driver.engine.dialect.is_mariadb = False  # type: ignore[attr-defined]
    lost = dataclasses.replace(third, receipt=third.receipt + "0")  # not its lease: nothing acked
    driver.ack_results([first, second, lost], ['"a"', None, '"c"'])
    assert [driver.job_status(d.id).state for d in (first, second, third)] == [  # type: ignore[union-attr]
        "succeeded",
        "succeeded",
        "running",
    ]
    assert driver.job_status(first.id).result == "a"  # type: ignore[union-attr]
    assert driver.stats("q").completed == 2


def test_upgrading_remakes_a_results_table_of_the_first_version_7(db_url: str) -> None:
    """The first form of version 7 keyed results by a sequence number; version 9 keys them by job id."""
    driver = DatabaseDriver(db_url, create_schema=False)
    try:
        upgrade(driver.engine, driver.tables, target=6)
        old = sa.Table(
            driver.tables.results.name,
            sa.MetaData(),
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.String(64), nullable=False),
            sa.Column("queue", sa.String(100), nullable=False),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("state", sa.SmallInteger, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("result", sa.Text, nullable=True),
            sa.Column("progress", sa.Text, nullable=True),
            sa.Column("finished_at", sa.Double, nullable=False),
        )
        with driver.engine.begin() as conn:
            old.create(conn)
            driver.tables.running.create(conn)
            conn.execute(sa.update(driver.tables.version).values(version=7))
        assert driver.upgrade_schema()[0] == 7
        columns = {c["name"] for c in sa.inspect(driver.engine).get_columns(driver.tables.results.name)}
        assert "seq" not in columns
        driver.enqueue([Message(name="n", payload=1, queue="q")])
        (held,) = driver.reserve(["q"], 1, 30.0)
        driver.ack_results([held], ['"kept"'])
        status = driver.job_status(held.id)
        assert status is not None and status.result == "kept"
    finally:
        driver.close()
