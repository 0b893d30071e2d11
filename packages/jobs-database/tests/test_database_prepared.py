"""PostgreSQL: the dispatch of one job and the claim run as prepared statements on libpq.

They must behave exactly as through psycopg's cursor: the same rows, the
same errors, inside the caller's transaction when there is one, and again
after the server forgot the prepared statement.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from jobs_core import Message
from jobs_database import DatabaseDriver
from jobs_database.prepared import PreparedStatement, text, to_float, to_int, to_str, to_tid, usable


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_statement_is_prepared_again_after_the_session_forgot_it(postgresql_base_url: str) -> None:
    statement = PreparedStatement(
        "probe",
        "SELECT $1::int8 + 1, $2::float8, $3::text, $4::bytea, '(3,4)'::tid",
        ("int8", "float8", "text", "bytea"),
    )
    with psycopg.connect(_plain(postgresql_base_url), autocommit=True) as conn:
        params = [text(41), text(0.1), "ü".encode(), b"\x00\xff"]
        for _ in range(2):
            [row] = statement.run(conn, params)
            assert (to_int(row[0]), to_float(row[1]), to_str(row[2]), row[3], to_tid(row[4])) == (
                42,
                0.1,
                "ü",
                b"\x00\xff",
                "(3,4)",
            )
            conn.execute("DEALLOCATE ALL")


def test_a_failing_statement_raises_psycopgs_error_and_the_connection_stays_usable(
    postgresql_base_url: str,
) -> None:
    statement = PreparedStatement("probe_div", "SELECT 1 / $1::int4", ("int4",))
    with psycopg.connect(_plain(postgresql_base_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            statement.run(conn, [text(0)])
        assert to_int(statement.run(conn, [text(1)])[0][0]) == 1


def test_the_prepared_path_is_used_only_where_the_cursor_would_not_begin_a_transaction(
    postgresql_base_url: str,
) -> None:
    with psycopg.connect(_plain(postgresql_base_url)) as conn:
        assert not usable(conn)  # idle, not autocommit: the cursor must send BEGIN
        conn.execute("SELECT 1")
        assert usable(conn)  # inside the transaction the cursor began
        conn.rollback()
        conn.autocommit = True
        assert usable(conn)
        conn.prepare_threshold = None  # the owner turned prepared statements off
        assert not usable(conn)


def test_one_job_dispatched_and_claimed_keeps_every_field(postgresql_driver: DatabaseDriver) -> None:
    queue = f"prepared-{uuid.uuid4().hex[:6]}"
    now = time.time()
    message = Message(name="n", queue=queue, payload={"x": "ü"}, priority=3, available_at=now, created_at=now)
    assert postgresql_driver.enqueue([message]) == [message.id]
    [delivery] = postgresql_driver.reserve([queue], limit=5, lease=30)
    assert delivery.message == message
    seq, handle_queue, priority, visible_at, ctid = delivery.handle
    assert (handle_queue, priority, visible_at) == (queue, 3, now)
    assert isinstance(seq, int) and ctid.startswith("(")
    assert delivery.receipt.endswith(f":{seq}")
    postgresql_driver.ack(delivery)
    assert postgresql_driver.stats(queue).completed == 1
