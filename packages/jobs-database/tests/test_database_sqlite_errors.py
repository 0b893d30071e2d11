"""SQLite failures say what happened: a full disk, a read-only file, an SQL error, a busy database."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_core.errors import (
    BackendError,
    BackendUnavailable,
    OperationTimedOut,
    ReadOnlyBackend,
    StorageFull,
)
from jobs_database import DatabaseDriver


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Makes files read-only, also for root (which ignores permission bits): ``chattr +i``."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            return
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot make a file read-only for root here: {done.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_file_is_reported_as_read_only(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    database = tmp_path / "jobs.db"
    driver = DatabaseDriver(f"sqlite:///{database}")
    driver.enqueue([Message(name="early", queue="q")])
    driver.close()
    read_only(database)
    driver = DatabaseDriver(f"sqlite:///{database}")
    try:
        assert driver.stats("q").pending == 1  # reading still works
        with pytest.raises(ReadOnlyBackend) as caught:
            driver.enqueue([Message(name="late", queue="q")])
    finally:
        driver.close()
    text = str(caught.value)
    assert text.startswith(f"enqueue: the SQLite database at {database} is read-only")
    assert "permissions of the file and of its directory" in text
    assert not caught.value.retryable


def test_a_database_opened_read_only_is_reported_as_read_only(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    DatabaseDriver(f"sqlite:///{database}").upgrade_schema()
    driver = DatabaseDriver(f"sqlite:///file:{database}?mode=ro&uri=true")
    try:
        with pytest.raises(ReadOnlyBackend, match=r"^enqueue: the SQLite database at .* is read-only"):
            driver.enqueue([Message(name="n", queue="q")])
    finally:
        driver.close()


def test_a_full_database_is_reported_as_full_and_retryable(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    driver = DatabaseDriver(f"sqlite:///{database}")
    try:
        driver.enqueue([Message(name="small", queue="q")])

        # The database may not grow past the pages it has: SQLite reports SQLITE_FULL,
        # exactly as when the disk has no space left.
        @sa.event.listens_for(driver.engine, "connect")
        def _cap(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA max_page_count = 1")

        driver.engine.dispose()
        with pytest.raises(StorageFull) as caught:
            driver.enqueue([Message(name="big", queue="q", payload="x" * 200_000)])
        assert str(caught.value).startswith(f"enqueue: the SQLite database at {database} is full")
        assert "no space is left on its disk, or it reached its max_page_count" in str(caught.value)
        assert caught.value.retryable
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
        assert driver.stats("q").pending == 1  # nothing of the refused batch was stored
    finally:
        driver.close()


def test_a_broken_jobs_table_is_an_sql_error_not_an_unreachable_database(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    driver = DatabaseDriver(f"sqlite:///{database}")
    try:
        driver.enqueue([Message(name="n", queue="q")])
        with sqlite3.connect(database) as conn:  # a column removed by hand
            conn.execute("ALTER TABLE jobs_jobs DROP COLUMN receipt")
        with pytest.raises(BackendError) as caught:
            driver.reserve(["q"])
        assert type(caught.value) is BackendError
        assert not caught.value.retryable
        text = str(caught.value)
        assert text.startswith(f"reserve: the SQLite database at {database} refused the statement")
        assert "an SQL or schema error" in text and "no such column: receipt" in text
    finally:
        driver.close()


def test_a_missing_directory_is_still_an_unreachable_database(tmp_path: Path) -> None:
    driver = DatabaseDriver(f"sqlite:///{tmp_path / 'absent' / 'jobs.db'}")
    try:
        with pytest.raises(BackendUnavailable, match="cannot be opened"):
            driver.enqueue([Message(name="n", queue="q")])
    finally:
        driver.close()


def test_a_write_lock_held_past_the_busy_timeout_is_reported_as_busy(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    DatabaseDriver(f"sqlite:///{database}").upgrade_schema()
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    driver = DatabaseDriver(f"sqlite:///{database}", busy_timeout=0.2)
    try:
        with pytest.raises(
            OperationTimedOut, match=r": the SQLite database at .* is busy: another connection"
        ):
            driver.enqueue([Message(name="n", queue="q")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        driver.close()
