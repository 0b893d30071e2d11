"""Tenant fairness on Redis: the turns, and every path by which a tenant's job waits again."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis
from jobs_core import workflow_state as ws
from jobs_core.flow_state import TENANT_HEADER
from jobs_core.ids import new_id
from jobs_core.message import Delivery, Message, MessageBatch
from jobs_redis import RedisDriver

Q = "tq"


def job(payload: object, tenant: str | None = None, **fields: object) -> Message:
    """A message of queue ``Q``, of ``tenant`` if given."""
    headers = {} if tenant is None else {TENANT_HEADER: tenant}
    return Message(name="t.job", payload=payload, queue=Q, headers=headers, **fields)  # type: ignore[arg-type]


def tenants(deliveries: Sequence[Delivery]) -> list[str]:
    """The tenant of each delivery, ``""`` for none."""
    return [d.message.headers.get(TENANT_HEADER, "") for d in deliveries]


def ring(client: redis.Redis, prefix: str) -> list[str]:
    """The queue's ring, head first."""
    members: list[bytes] = client.zrange(f"{{{prefix}}}:q:{Q}:T", 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


def test_a_backlog_delays_each_other_source_by_one_turn_across_reserves(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    common = job(None, "big").__dict__.copy()
    del common["id"], common["payload"]
    driver.enqueue(MessageBatch(common, range(100_000)))  # as dispatch_many stores a backlog
    driver.enqueue([job("s0", "small"), job("s1", "small"), job("plain"), job("m0", "mid")])
    assert ring(client, prefix) == ["", "big", "small", "mid"]
    # One job per reserve, as many workers would take them: the turns hold between calls.
    got = [driver.reserve([Q])[0] for _ in range(8)]
    assert tenants(got) == ["", "big", "small", "mid", "big", "small", "big", "big"]
    assert [d.message.payload for d in got if tenants([d]) == ["small"]] == ["s0", "s1"]
    assert ring(client, prefix) == ["", "big"]  # the emptied tenants left; "" stays while the ring does
    assert driver.purge(Q) == 100_000 - 4


def test_priorities_order_a_tenants_own_jobs_not_the_turns(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    driver.enqueue([job("a-low", "a"), job("a-high", "a", priority=5), job("a-mid", "a", priority=1)])
    driver.enqueue([job("b-low", "b"), job("b-high", "b", priority=9)])
    got = driver.reserve([Q], limit=10)
    assert [d.message.payload for d in got] == ["a-high", "b-high", "a-mid", "b-low", "a-low"]


def test_the_ring_goes_when_only_jobs_without_a_tenant_are_left(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    driver.enqueue([job("t", "a"), job("p0"), job("p1")])
    first = driver.reserve([Q], limit=2)
    assert tenants(first) == ["", "a"]
    assert not client.exists(f"{{{prefix}}}:q:{Q}:T")
    assert not client.exists(f"{{{prefix}}}:q:{Q}:tp:a")
    assert [d.message.payload for d in driver.reserve([Q], limit=5)] == ["p1"]


def test_a_lost_lease_a_release_and_a_retry_go_back_to_their_tenant(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    driver.enqueue([job(n, "big") for n in range(50)])
    driver.enqueue([job("x", "small")])
    taken = driver.reserve([Q], limit=3, lease=0.05)
    assert tenants(taken) == ["big", "small", "big"]
    time.sleep(0.1)
    # The ended leases put the jobs back, "x" among the small tenant's: served at its turn.
    again = driver.reserve([Q], limit=2)
    assert [d.message.payload for d in again] == [0, "x"]
    driver.release(again[1])
    assert ring(client, prefix)[-1] == "small"
    assert [d.message.payload for d in driver.reserve([Q], limit=2)] == [1, "x"]
    driver.enqueue([job("y", "other")])
    other = next(d for d in driver.reserve([Q], limit=2) if tenants([d]) == ["other"])
    driver.retry(other, 0.0, "boom")
    back = [d for d in driver.reserve([Q], limit=4) if tenants([d]) == ["other"]]
    assert [(d.message.payload, d.message.attempts) for d in back] == [("y", 1)]


def test_a_delayed_tenant_job_waits_its_time_and_wakes_a_reserve(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    driver.enqueue([job("later", "a", available_at=time.time() + 0.3)])
    assert driver.reserve([Q], limit=5) == []
    assert driver.stats(Q).delayed == 1
    started = time.monotonic()
    got = driver.reserve([Q], limit=5, timeout=3.0)
    assert [d.message.payload for d in got] == ["later"]
    assert 0.2 < time.monotonic() - started < 2.0


def test_stats_purge_and_cancel_see_tenant_jobs(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    later = time.time() + 60
    ids = driver.enqueue([job(n, "a") for n in range(3)] + [job("d", "b", available_at=later), job("p")])
    stats = driver.stats(Q)
    assert (stats.pending, stats.delayed) == (4, 1)
    assert driver.cancel(str(ids[0])) == "removed"
    assert driver.stats(Q).pending == 3
    got = driver.reserve([Q], limit=10)
    assert sorted(str(d.message.payload) for d in got) == ["1", "2", "p"]
    driver.enqueue([job(n, "c") for n in range(4)])
    assert driver.purge(Q) == 5
    assert driver.stats(Q).pending == driver.stats(Q).delayed == 0
    assert not [k for k in client.scan_iter(match=f"{{{prefix}}}:q:{Q}:t*")]
    assert not client.exists(f"{{{prefix}}}:q:{Q}:T")


def test_a_retried_failed_job_and_a_raw_record_keep_their_tenant(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    driver.enqueue([job("f", "a")])
    (held,) = driver.reserve([Q])
    driver.fail(held, "boom")
    assert driver.retry_failed(held.id)
    assert ring(client, prefix) == ["", "a"]
    driver.inject_raw(Q, job("raw", "r").encode())
    assert ring(client, prefix) == ["", "a", "r"]
    got = driver.reserve([Q], limit=5)
    assert sorted(d.message.payload for d in got) == ["f", "raw"]


def test_ordered_keys_keep_their_order_within_a_tenant(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    driver.enqueue([job(n, "a", key="k") for n in range(3)] + [job("b", "b")])
    first = driver.reserve([Q], limit=5)
    assert [d.message.payload for d in first] == [0, "b"]
    driver.ack(first[0])
    assert [d.message.payload for d in driver.reserve([Q], limit=5)] == [1]


def tenant_batch(driver: RedisDriver, count: int) -> tuple[str, list[Message]]:
    """A batch of ``count`` jobs of the tenant "w" (payloads 0, 1, ...), stored by the workflow commit."""
    batch_id = new_id()
    headers = {ws.WORKFLOW_HEADER: batch_id, TENANT_HEADER: "w"}
    members = [Message(name="t.x", queue=Q, payload=n, headers=headers) for n in range(count)]
    with driver.workflow_transaction() as store:
        ws.create(store, ws.new_record(ws.BATCH, batch_id, count, {}), members)
    return batch_id, members


def test_a_batch_of_tenant_jobs_takes_turns_and_a_cancelled_one_leaves_its_tenant(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    batch_id, members = tenant_batch(driver, 3)
    driver.enqueue([job("other", "o")])
    assert ring(client, prefix) == ["", "w", "o"]
    assert driver.cancel(members[0].id) == "removed"
    got = driver.reserve([Q], limit=2)
    assert [d.message.payload for d in got] == [1, "other"]
    driver.ack(got[0])
    done = driver.workflow(batch_id)
    assert done is not None and (done.succeeded, done.cancelled) == (1, 1)
    assert [d.message.payload for d in driver.reserve([Q], limit=2)] == [2]


def test_a_purge_cancels_a_workflows_tenant_jobs_in_their_workflow(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    batch_id, _ = tenant_batch(driver, 2)
    driver.enqueue([job("plain", "w"), job("other", "o")])
    assert driver.purge(Q) == 4
    done = driver.workflow(batch_id)
    assert done is not None and done.cancelled == 2
    assert driver.reserve([Q], limit=5) == []
    assert not client.exists(f"{{{prefix}}}:q:{Q}:T")
