from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_core.errors import ConfigurationError
from jobs_database import SCHEMA_VERSION, DatabaseDriver, DatabaseSettings
from jobs_database.engine import create_engine
from jobs_database.schema import build_tables, current_version, upgrade


def test_first_use_creates_the_schema_at_the_current_version(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver()
    assert driver.schema_version() == 0
    driver.enqueue([Message(name="n", queue="q")])
    assert driver.schema_version() == SCHEMA_VERSION


def test_a_version_1_schema_is_upgraded_in_place_keeping_its_jobs(db_url: str) -> None:
    settings = DatabaseSettings.parse(db_url)
    engine = create_engine(settings)
    tables = build_tables(settings.table_prefix)
    try:
        assert upgrade(engine, tables, target=1) == (0, 1)
        message = Message(name="old", payload={"kept": True}, queue="q")
        leased = Message(name="leased", queue="q")
        lease_end = time.time() + 300.0
        with engine.begin() as conn:
            conn.execute(
                sa.insert(tables.jobs).values(
                    id=message.id,
                    queue="q",
                    priority=0,
                    visible_at=message.available_at,
                    state=0,
                    created_at=message.created_at,
                    body=message.encode(),
                )
            )
            # Version 1 kept a reserved row's lease end in visible_at.
            conn.execute(
                sa.insert(tables.jobs).values(
                    id=leased.id,
                    queue="q",
                    priority=0,
                    visible_at=lease_end,
                    state=1,
                    receipt="v1lease:2",
                    created_at=leased.created_at,
                    body=leased.encode(),
                )
            )
        with engine.connect() as conn:
            assert current_version(conn, tables) == 1
            assert not sa.inspect(conn).has_table(tables.completed.name)
    finally:
        engine.dispose()

    strict = DatabaseDriver(db_url, create_schema=False)
    try:
        with pytest.raises(ConfigurationError, match="jobs db upgrade"):
            strict.reserve(["q"])
    finally:
        strict.close()

    result = subprocess.run(
        [sys.executable, "-m", "jobs_database", "upgrade", "--url", db_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"from version 1 to {SCHEMA_VERSION}" in result.stdout

    driver = DatabaseDriver(db_url, create_schema=False)
    try:
        assert driver.schema_version() == SCHEMA_VERSION
        assert driver.stats("q").reserved == 1  # the lease taken under version 1 still holds
        [delivery] = driver.reserve(["q"], limit=10)
        assert delivery.message.payload == {"kept": True}
        driver.ack(delivery)
        assert driver.stats("q").completed == 1
    finally:
        driver.close()
    # ... and ends when version 1 said it would.
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            kept_until = conn.execute(
                sa.select(tables.jobs.c.lease_until).where(tables.jobs.c.id == leased.id)
            ).scalar_one()
        assert float(kept_until) == pytest.approx(lease_end, abs=0.01)
    finally:
        engine.dispose()


def test_concurrent_first_use_from_many_connections_creates_the_schema_once(db_url: str) -> None:
    errors: list[BaseException] = []
    results: list[tuple[int, int]] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        settings = DatabaseSettings.parse(db_url)
        engine = create_engine(settings)
        try:
            barrier.wait()
            results.append(upgrade(engine, build_tables(settings.table_prefix)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert (0, SCHEMA_VERSION) in results
    assert sum(1 for before, _ in results if before == 0) == 1
    assert all(after == SCHEMA_VERSION for _, after in results)


def test_a_schema_newer_than_the_driver_is_refused(
    make_driver: Callable[..., DatabaseDriver], db_url: str
) -> None:
    driver = make_driver()
    driver.upgrade_schema()
    with driver.engine.begin() as conn:
        conn.execute(sa.update(driver.tables.version).values(version=SCHEMA_VERSION + 1))
    # Another process (no schema check cached) must refuse the tables.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from jobs_database import DatabaseDriver; DatabaseDriver({db_url!r}).stats()",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "newer than this jobs-database supports" in result.stderr


def test_jobs_db_upgrade_is_a_command_of_the_jobs_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    first = subprocess.run(
        [sys.executable, "-m", "jobs_core", "db", "upgrade", "--url", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {SCHEMA_VERSION}" in first.stdout
    again = subprocess.run(
        [sys.executable, "-m", "jobs_core", "db", "version", "--url", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert f"version {SCHEMA_VERSION}" in again.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "jobs_core", "db", "upgrade", "--url", url, "--table-prefix", "x; drop"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "invalid table prefix" in bad.stderr


def test_postgresql_finds_jobs_through_the_claim_index_alone(postgresql_driver: DatabaseDriver) -> None:
    """Version 4: no primary-key index to maintain per insert; leases still name their rows.

    Version 6 adds the unique index on ``id`` (a repeated enqueue stores nothing),
    version 11 the partial index of tenants' jobs (no entry for a job without one).
    """
    driver, prefix = postgresql_driver, postgresql_driver.tables.prefix
    driver.enqueue([Message(name="n", queue="q", payload=i) for i in range(3)])
    with driver.engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert inspector.get_pk_constraint(f"{prefix}jobs")["constrained_columns"] == []
        indexes = {i["name"] for i in inspector.get_indexes(f"{prefix}jobs")}
        expected = {f"{prefix}jobs_claim", f"{prefix}jobs_unique", f"{prefix}jobs_id", f"{prefix}jobs_tenant"}
        assert indexes == expected
        collation = conn.execute(
            sa.text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = :t AND column_name = 'queue'"
            ),
            {"t": f"{prefix}jobs"},
        ).scalar()
        assert collation == "C"
    first, second, third = driver.reserve(["q"], limit=3, lease=30)
    assert driver.extend(first, 60)
    driver.retry(second, 0.0, "boom")
    driver.ack_many([first, third])
    (again,) = driver.reserve(["q"], limit=3, lease=30)
    assert (again.message.payload, again.message.attempts) == (second.message.payload, 1)
    driver.fail(again, "gave up")
    assert driver.stats("q").to_dict() == {
        "pending": 0,
        "delayed": 0,
        "reserved": 0,
        "completed": 2,
        "failed": 1,
    }
