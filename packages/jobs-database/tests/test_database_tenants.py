"""Tenant fairness on SQLite, PostgreSQL and MariaDB: turns between tenants, and the upgrade to it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from jobs_core import Message
from jobs_core.errors import ConfigurationError
from jobs_core.flow_state import TENANT_HEADER
from jobs_database import DatabaseDriver
from jobs_database.schema import SCHEMA_VERSION, upgrade


def tenant_jobs(queue: str, tenant: str, count: int) -> list[Message]:
    return [
        Message(name="t", payload={"tenant": tenant, "n": n}, queue=queue, headers={TENANT_HEADER: tenant})
        for n in range(count)
    ]


def tenants(deliveries: list[object]) -> list[str]:
    return [d.message.payload.get("tenant", "") for d in deliveries]  # type: ignore[attr-defined]


def test_batches_of_one_alternate_between_tenants(make_driver: Callable[..., DatabaseDriver]) -> None:
    driver = make_driver()
    driver.enqueue(tenant_jobs("q", "a", 100))
    driver.enqueue(tenant_jobs("q", "b", 3))
    seen = []
    for _ in range(8):
        (delivery,) = driver.reserve(["q"], 1, 30.0)
        seen.append(delivery)
    assert tenants(seen)[:6].count("b") == 3, f"tenant b waited behind tenant a: {tenants(seen)}"
    assert [d.message.payload["n"] for d in seen if d.message.payload["tenant"] == "b"] == [0, 1, 2]


def test_a_large_batch_of_one_tenant_is_stored_and_served_in_turn(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver()
    driver.enqueue(tenant_jobs("q", "a", 3_000))  # above the bulk threshold: PostgreSQL's COPY
    driver.enqueue([*tenant_jobs("q", "b", 2), Message(name="t", payload={"n": 0}, queue="q")])
    got = driver.reserve(["q"], 9, 30.0)
    assert sorted(tenants(got)) == ["", "a", "a", "a", "a", "a", "a", "b", "b"]
    assert all(d.message.headers[TENANT_HEADER] == "a" for d in got if d.message.payload.get("tenant") == "a")
    driver.ack_many(got)
    assert driver.stats("q").pending == 2_994


def test_jobs_stored_before_the_queues_first_tenant_have_their_turn(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver()
    driver.enqueue([Message(name="t", payload={"n": n}, queue="q", priority=-1) for n in range(3)])
    driver.enqueue(tenant_jobs("q", "a", 100))
    driver.enqueue([Message(name="t", payload={"n": 3}, queue="q", priority=-1)])
    driver.enqueue(tenant_jobs("q", "b", 1))
    got = driver.reserve(["q"], 6, 30.0)
    # Lowest priority: without their turn they would wait for all of a's.
    assert tenants(got).count("") >= 2, f"the jobs without a tenant waited: {tenants(got)}"
    assert "b" in tenants(got)
    rest = driver.reserve(["q"], 100, 30.0)
    plain = [d.message.payload["n"] for d in [*got, *rest] if "tenant" not in d.message.payload]
    assert sorted(plain) == [0, 1, 2, 3]


def test_a_tenant_seen_by_another_driver_gets_its_turn(make_driver: Callable[..., DatabaseDriver]) -> None:
    producer, worker = make_driver(), make_driver()
    producer.enqueue(tenant_jobs("q", "a", 50))
    assert tenants(worker.reserve(["q"], 1, 30.0)) == ["a"]
    producer.enqueue(tenant_jobs("q", "b", 1))
    time.sleep(0.6)  # the worker's driver rereads which queues have tenants
    got = worker.reserve(["q"], 4, 30.0)
    assert "b" in tenants(got)


def test_a_tenant_header_the_column_cannot_hold_is_stored_without_a_tenant(
    make_driver: Callable[..., DatabaseDriver],
) -> None:
    driver = make_driver()
    long = Message(name="t", payload={"n": 1}, queue="q", headers={TENANT_HEADER: "x" * 300})
    empty = Message(name="t", payload={"n": 2}, queue="q", headers={TENANT_HEADER: ""})
    driver.enqueue([long, empty])
    got = driver.reserve(["q"], 5, 30.0)
    assert sorted(d.message.payload["n"] for d in got) == [1, 2]
    assert got[0].message.headers[TENANT_HEADER] in ("x" * 300, "")


def test_upgrading_from_version_10_keeps_stored_jobs_and_serves_tenants(db_url: str) -> None:
    driver = DatabaseDriver(db_url, create_schema=False)
    try:
        upgrade(driver.engine, driver.tables, target=10)
        with pytest.raises(ConfigurationError, match="schema version 10"):
            driver.enqueue([Message(name="n", payload=1, queue="q")])
        jobs = driver.tables.jobs
        old = Message(name="old", payload={"n": 0}, queue="q")
        with driver.engine.begin() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(jobs.name)}
            # (SQLite's version 5 copied the jobs into a table of the driver's definition.)
            assert ("tenant" in columns) == (conn.dialect.name == "sqlite")
            conn.execute(
                sa.insert(jobs).values(
                    id=old.id,
                    queue="q",
                    priority=0,
                    visible_at=time.time(),
                    state=0,
                    created_at=time.time(),
                    body=old.encode(),
                )
            )
        assert driver.upgrade_schema() == (10, SCHEMA_VERSION)
        driver.enqueue(tenant_jobs("q", "a", 20))
        driver.enqueue(tenant_jobs("q", "b", 1))
        got = driver.reserve(["q"], 3, 30.0)
        assert sorted(tenants(got)) == ["", "a", "b"], "the stored job is served as one without a tenant"
        assert old.id in {d.message.id for d in got}
    finally:
        driver.close()


def test_purging_a_queue_forgets_its_tenants_without_jobs(make_driver: Callable[..., DatabaseDriver]) -> None:
    driver = make_driver()
    driver.enqueue(tenant_jobs("q", "a", 5) + tenant_jobs("q", "b", 2))
    held = driver.reserve(["q"], 1, 30.0)  # a running job keeps its tenant
    assert driver.purge("q") == 6
    table = driver.tables.metadata.tables[f"{driver.tables.prefix}tenants"]
    with driver.engine.connect() as conn:
        left = set(conn.execute(sa.select(table.c.tenant)).scalars())
    assert left == set(tenants(held))
