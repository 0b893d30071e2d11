"""The database driver behind PgBouncer in transaction mode (``pooler=transaction``).

A pooler in transaction mode gives each transaction whichever server
connection is free, so nothing may outlive a transaction on the server: a
prepared statement (psycopg's, or the driver's own claim and insert sent
straight through libpq), a session setting, a ``LISTEN``. A PgBouncer is
started on a free port with its own configuration in a temporary directory,
with fewer server connections than the driver has client connections, so
that consecutive transactions of one client land on different servers.
PgBouncer missing: skipped on a developer machine, failed under ``CI``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from jobs_core.errors import ConfigurationError
from jobs_core.message import Message
from jobs_database import DatabaseDriver
from jobs_database.settings import DatabaseSettings

JOBS = 400
THREADS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def pgbouncer_url(postgresql_base_url: str, tmp_path: Path) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test server (2 server connections); its URL."""
    exe = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if exe is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = sa.make_url(postgresql_base_url)
    port = _free_port()
    directory = tmp_path / "pgbouncer"
    directory.mkdir()
    target = f"host={server.host or '127.0.0.1'} port={server.port or 5432} user={server.username}"
    if server.password:
        target += f" password={server.password}"
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = {target}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    command = [exe, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        command[1:1] = ["-u", "nobody"]
    log = directory / "pgbouncer.log"
    with log.open("w") as log_file:  # its log on stderr, into a file opened here (readable as any user)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        url = server.set(host="127.0.0.1", port=port, password=None).render_as_string(hide_password=False)
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"pgbouncer exited: {log.read_text()[-2000:]}"
            try:
                psycopg.connect(plain, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "pgbouncer did not accept connections within 15 s"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def pooled_driver(pgbouncer_url: str, postgresql_base_url: str, prefixes: Any) -> Iterator[DatabaseDriver]:
    url = prefixes.url(pgbouncer_url, drop_on=postgresql_base_url)
    driver = DatabaseDriver(url, pooler="transaction", pool_size=THREADS)
    try:
        yield driver
    finally:
        driver.close()


def test_jobs_dispatched_one_by_one_and_in_bulk_are_each_claimed_and_acked_once_behind_pgbouncer(
    pooled_driver: DatabaseDriver,
) -> None:
    queue = "pooled"
    ids = [
        pooled_driver.enqueue([Message(name="n", queue=queue, payload={"i": i})])[0] for i in range(JOBS // 2)
    ]
    ids += pooled_driver.enqueue(
        [Message(name="n", queue=queue, payload={"i": i}) for i in range(JOBS // 2, JOBS)]
    )
    assert len(set(ids)) == JOBS
    acked: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                got = pooled_driver.reserve([queue], limit=3, lease=30)
                if got:
                    idle_since = time.monotonic()
                for delivery in got:
                    pooled_driver.ack(delivery)
                    with lock:
                        acked.append(delivery.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert Counter(acked) == Counter(ids)  # every job once, none twice
    stats = pooled_driver.stats(queue)
    assert (stats.pending, stats.reserved, stats.completed) == (0, 0, JOBS)


def test_retries_and_failures_behind_pgbouncer_keep_their_place_and_attempts(
    pooled_driver: DatabaseDriver,
) -> None:
    queue = "pooled-retry"
    [ident] = pooled_driver.enqueue([Message(name="n", queue=queue, payload={}, max_retries=1)])
    for attempt in (0, 1):
        [delivery] = pooled_driver.reserve([queue], limit=1, lease=30)
        assert (delivery.id, delivery.message.attempts) == (ident, attempt)
        if attempt == 0:
            pooled_driver.retry(delivery, 0, "again")
        else:
            pooled_driver.fail(delivery, "boom")
    assert [failed.id for failed in pooled_driver.failed()] == [ident]


def test_transaction_pooling_turns_listen_off_and_refuses_it_when_asked_for() -> None:
    url = "postgresql://u@db.example/app"
    assert DatabaseSettings.parse(f"{url}?pooler=transaction").notify is False
    assert DatabaseSettings.parse(f"{url}?pooler=session").notify is True
    with pytest.raises(ConfigurationError, match="'notify' cannot be true with pooler=transaction"):
        DatabaseSettings.parse(f"{url}?pooler=transaction&notify=true")
    with pytest.raises(ConfigurationError, match="'pooler' must be none, session or transaction"):
        DatabaseSettings.parse(f"{url}?pooler=statement")
    with pytest.raises(ConfigurationError, match="'pooler' is for PostgreSQL"):
        DatabaseSettings.parse("sqlite:///jobs.db?pooler=transaction")
