"""Failure behaviour: a database that is down, and connections killed under a running worker."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import Message, job
from jobs_core.app import JobsApp
from jobs_core.errors import BackendError, BackendUnavailable
from jobs_database import DatabaseDriver


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_dispatch_to_a_database_that_is_down_names_the_host_and_hides_the_password(scheme: str) -> None:
    port = _closed_port()
    driver = DatabaseDriver(f"{scheme}://app:Sup3rSecret@127.0.0.1:{port}/jobs", connect_timeout=2)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            driver.enqueue([Message(name="a", queue="q")])
    finally:
        driver.close()
    elapsed = time.monotonic() - started
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text
    assert "Sup3rSecret" not in text
    assert caught.value.retryable
    assert elapsed < 20, f"the error took {elapsed:.1f}s; connect_timeout is 2s"


RECORDED: list[str] = []
RECORDED_LOCK = threading.Lock()


@job(name="tests.database.record_slowly")
def record_slowly(payload: Any) -> None:
    time.sleep(0.003)
    with RECORDED_LOCK:
        RECORDED.append(payload["n"])


def _terminate(admin: sa.Engine, application_name: str) -> int:
    with admin.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": application_name},
        ).all()
    return len(rows)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_a_database_that_does_not_exist_is_named_not_reported_as_unreachable(db_url: str) -> None:
    url = sa.engine.make_url(db_url).set(database="jobs_no_such_database")
    driver = DatabaseDriver(url.render_as_string(hide_password=False))
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as caught:
            driver.enqueue([Message(name="a", queue="q")])
    finally:
        driver.close()
    text = str(caught.value)
    assert "has no database 'jobs_no_such_database': create it" in text
    assert "cannot reach" not in text
    assert not isinstance(caught.value, BackendUnavailable)
    assert not caught.value.retryable
    assert time.monotonic() - started < 5  # answered at once, not retried as a lost connection


def test_a_worker_recovers_from_pg_terminate_backend_and_completes_every_job(
    postgresql_base_url: str,
) -> None:
    application_name = f"jobs-test-{uuid.uuid4().hex[:8]}"
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    url = f"{postgresql_base_url}?table_prefix={prefix}&application_name={application_name}"
    admin = sa.create_engine(postgresql_base_url)
    app = JobsApp(url)
    app.register(record_slowly)
    RECORDED.clear()
    total = 600
    app.dispatch_many(record_slowly, [{"n": str(i)} for i in range(total)], queue="kill")
    worker = app.worker("kill", install_signal_handlers=False, lease=5.0, poll_interval=0.2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        killed = 0
        deadline = time.monotonic() + 120
        while len(set(RECORDED)) < total and time.monotonic() < deadline:
            time.sleep(0.15)
            if killed < 10:
                killed += _terminate(admin, application_name) and 1
        assert killed >= 3, "the test did not manage to kill the worker's connections"
        assert set(RECORDED) == {str(i) for i in range(total)}
        # The lease outlives nothing here: acks went through after reconnecting.
        deadline = time.monotonic() + 30
        while app.stats("kill")["completed"] != total and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = app.stats("kill")
        assert stats["completed"] == total
        assert stats["pending"] == stats["reserved"] == stats["failed"] == 0
    finally:
        worker.stop()
        thread.join(timeout=30)
        driver = app.driver
        assert isinstance(driver, DatabaseDriver)
        from jobs_database.schema import drop_all

        app.close()
        drop_all(admin, driver.tables)
        admin.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_blocking_reserve_on_postgresql_wakes_on_notify_long_before_its_poll(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    waiter = make_driver(poll_interval=60)
    producer = make_driver()
    waiter.reserve(["q"])  # schema ready, listener not yet needed
    got: list[Any] = []

    def wait() -> None:
        got.extend(waiter.reserve(["q"], timeout=30))

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.5)  # the waiter is blocked
    started = time.monotonic()
    producer.enqueue([Message(name="a", queue="q")])
    thread.join(timeout=30)
    assert len(got) == 1
    # Well under the 60 s poll: the NOTIFY woke it.
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("size", [1, 500])
def test_enqueue_after_its_pooled_connections_were_killed_succeeds(
    postgresql_base_url: str, size: int
) -> None:
    application_name = f"jobs-test-{uuid.uuid4().hex[:8]}"
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    url = f"{postgresql_base_url}?table_prefix={prefix}&application_name={application_name}"
    admin = sa.create_engine(postgresql_base_url)
    driver = DatabaseDriver(url)
    try:
        driver.enqueue([Message(name="a", queue="q") for _ in range(size)])
        assert _terminate(admin, application_name) >= 1
        ids = driver.enqueue([Message(name="b", queue="q") for _ in range(size)])
        assert len(ids) == size
        assert driver.stats("q").pending == 2 * size
    finally:
        from jobs_database.schema import drop_all

        driver.close()
        drop_all(admin, driver.tables)
        admin.dispose()


def test_tables_dropped_behind_a_running_driver_are_recreated(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    from jobs_database.schema import drop_all

    driver = make_driver()
    driver.enqueue([Message(name="a", queue="q")])
    drop_all(driver.engine, driver.tables)
    driver.enqueue([Message(name="b", queue="q")])
    [delivery] = driver.reserve(["q"])
    assert delivery.message.name == "b"


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
def test_mariadb_connections_killed_by_the_server_are_replaced(
    make_driver: Callable[..., DatabaseDriver], db_url: str
) -> None:
    driver = make_driver(pool_size=1)
    driver.enqueue([Message(name="a", queue="q")])
    with driver.engine.connect() as conn:  # the pool's only connection
        victim = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
    admin = sa.create_engine(db_url.split("?", 1)[0])
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"KILL CONNECTION {int(victim)}"))
    finally:
        admin.dispose()
    driver.enqueue([Message(name="b", queue="q")])
    deliveries = driver.reserve(["q"], limit=10)
    assert sorted(d.message.name for d in deliveries) == ["a", "b"]
    driver.ack_many(deliveries)
    assert driver.stats("q").completed == 2
