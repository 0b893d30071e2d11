"""Jobs by state and workers on Redis: what the conformance suite does not look at.

A live worker and the CLI on Redis are tested in tests/test_listing_backends.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from jobs_core.flow import TENANT_HEADER
from jobs_core.message import Message
from jobs_core.status import CANCELLED, DELAYED, FAILED, QUEUED, RUNNING, SUCCEEDED
from jobs_core.worker_records import WORKER_EXPIRY, WorkerRecord
from jobs_redis import RedisDriver


def _one(driver: RedisDriver, queue: str = "q", **fields: Any) -> str:
    (ident,) = driver.enqueue([Message(name="t.x", queue=queue, payload=None, **fields)])
    assert ident is not None
    return ident


def _ids(
    driver: RedisDriver, state: str, queue: str | None = None, limit: int = 50, offset: int = 0
) -> list[str]:
    return [status.id for status in driver.list_jobs(state, queue, limit, offset)]


def _worker(ident: str, last_seen: float, started_at: float = 0.0) -> WorkerRecord:
    return WorkerRecord(
        ident, "web-3:41", "web-3", 41, ("default",), 8, started_at, last_seen, 5120, 3, "0.1.0"
    )


def test_every_queue_is_listed_in_reserve_order_and_paged(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    now = time.time()
    a = _one(driver, "a")
    b = _one(driver, "b", priority=3)
    c = _one(driver, "a", priority=3)
    d = _one(driver, "b")
    _one(driver, "a", available_at=now + 60)
    order = [b, c, a, d]
    assert _ids(driver, QUEUED) == order
    pages = [_ids(driver, QUEUED, limit=1, offset=n) for n in range(5)]
    assert pages == [[ident] for ident in order] + [[]]
    assert _ids(driver, QUEUED, "b") == [b, d]
    assert _ids(driver, QUEUED, limit=2, offset=1) == [c, a]
    assert _ids(driver, QUEUED, limit=0) == []


def test_jobs_of_tenants_are_listed_with_the_others_waiting_and_delayed(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    plain = _one(driver)
    acme = _one(driver, headers={TENANT_HEADER: "acme"})
    urgent = _one(driver, priority=5, headers={TENANT_HEADER: "globex"})
    later = _one(driver, available_at=time.time() + 60, headers={TENANT_HEADER: "acme"})
    assert _ids(driver, QUEUED, "q") == [urgent, plain, acme]
    assert _ids(driver, DELAYED, "q") == [later]
    assert _ids(driver, QUEUED, "q", limit=1, offset=2) == [acme]


def test_a_job_whose_lease_ended_keeps_its_place_in_line(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    first = _one(driver)
    driver.reserve(["q"], lease=0.2)
    second = _one(driver)
    high = _one(driver, priority=5)
    time.sleep(0.4)
    listed = driver.list_jobs(QUEUED, "q")
    assert [s.id for s in listed] == [high, first, second]
    assert all(s.state == QUEUED and s.lease_expires_at is None and s.worker is None for s in listed)
    assert [d.message.id for d in driver.reserve(["q"], limit=3)] == [high, first, second]


def test_keyed_jobs_waiting_for_their_turn_are_listed_after_the_ready_ones(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    first = _one(driver, key="order-7")
    behind = _one(driver, key="order-7")
    later = _one(driver, key="order-7", available_at=time.time() + 60)
    plain = _one(driver)
    assert _ids(driver, QUEUED, "q") == [first, plain, behind]
    assert _ids(driver, DELAYED, "q") == [later]


def test_delayed_jobs_of_every_queue_and_priority_are_listed_by_due_time(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    now = time.time()
    late = _one(driver, "a", available_at=now + 300)
    soon = _one(driver, "b", priority=9, available_at=now + 30)
    mid = _one(driver, "a", priority=2, available_at=now + 60)
    assert _ids(driver, DELAYED) == [soon, mid, late]
    assert _ids(driver, DELAYED, limit=1, offset=2) == [late]
    assert [s.available_at for s in driver.list_jobs(DELAYED, "b")] == [now + 30]  # every digit


def test_running_jobs_of_every_queue_are_listed_by_lease_end(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    long, short = _one(driver, "a"), _one(driver, "b")
    (held_long,) = driver.reserve(["a"], lease=120)
    (held_short,) = driver.reserve(["b"], lease=60)
    listed = driver.list_jobs(RUNNING)
    assert [s.id for s in listed] == [short, long]
    assert [s.lease_expires_at for s in listed] == [held_short.lease_expires_at, held_long.lease_expires_at]
    assert _ids(driver, QUEUED) == []


def test_a_listed_job_says_what_job_status_says(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    for _ in range(5):
        _one(driver)
    _one(driver, available_at=time.time() + 60)
    held = driver.reserve(["q"], limit=3, lease=60)
    driver.ack_results(held[:1], ['{"n": 18446744073709551617}'])
    driver.fail(held[1], "ValueError: no")
    driver.cancel(driver.list_jobs(QUEUED)[0].id)
    for state in (QUEUED, DELAYED, RUNNING, SUCCEEDED, FAILED, CANCELLED):
        (listed,) = driver.list_jobs(state, "q")
        assert listed == driver.job_status(listed.id), state


def test_a_job_finished_again_is_listed_once_in_its_latest_state(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver()
    ident = _one(driver)
    driver.ack_results(driver.reserve(["q"]), ["1"])
    time.sleep(0.01)
    driver.enqueue([Message(name="t.x", queue="other", payload=None, id=ident)])
    driver.cancel(ident)
    assert _ids(driver, SUCCEEDED) == [] and _ids(driver, SUCCEEDED, "q") == []
    assert _ids(driver, CANCELLED) == [ident] and _ids(driver, CANCELLED, "other") == [ident]
    assert _ids(driver, CANCELLED, "q") == []


def test_kept_results_are_paged_newest_first_and_pruned(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    ids = [_one(driver) for _ in range(5)]
    held = {d.message.id: d for d in driver.reserve(["q"], limit=5)}
    for ident in ids:
        driver.ack_results([held[ident]], ["1"])
        time.sleep(0.002)
    newest = ids[::-1]
    assert _ids(driver, SUCCEEDED) == newest
    assert [_ids(driver, SUCCEEDED, "q", limit=2, offset=n) for n in (0, 2, 4)] == [
        newest[0:2],
        newest[2:4],
        newest[4:],
    ]
    driver.prune(0.0)
    base = driver.settings.base
    assert client.zcard(base + "rk:succeeded") == 0 and client.zcard(base + "q:q:rk:succeeded") == 0
    assert _ids(driver, SUCCEEDED) == []


def test_nothing_is_listed_as_finished_when_no_results_are_kept(
    make_driver: Callable[..., RedisDriver],
) -> None:
    driver = make_driver(results_ttl=0)
    ident = _one(driver)
    driver.cancel(ident)
    assert _ids(driver, CANCELLED) == [] and _ids(driver, SUCCEEDED) == []


def test_worker_records_live_under_the_prefix_and_stale_ones_are_deleted(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    now = time.time()
    driver.save_worker(_worker("gone", now - WORKER_EXPIRY - 1))
    assert driver.workers() == []
    driver.save_worker(_worker("here", now, started_at=now - 5))
    base = driver.settings.base
    assert client.zrange(base + "wk", 0, -1) == [b"here"] and client.hkeys(base + "wkr") == [b"here"]
    assert [r.id for r in driver.workers()] == ["here"]
    assert driver.remove_worker("here") and not client.exists(base + "wk", base + "wkr")
