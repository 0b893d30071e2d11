"""Status, kept results and cancellation on Redis: what the conformance suite does not look at."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from jobs_core.errors import ConfigurationError
from jobs_core.message import Message
from jobs_core.status import CANCEL_REMOVED, CANCELLED, SUCCEEDED, Progress
from jobs_redis import RedisDriver


def _one(driver: RedisDriver, queue: str = "q", **fields: object) -> str:
    (ident,) = driver.enqueue([Message(name="t.x", queue=queue, payload=None, **fields)])  # type: ignore[arg-type]
    assert ident is not None
    return ident


def test_a_kept_result_keeps_every_digit(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    ident = _one(driver)
    (held,) = driver.reserve(["q"])
    text = '{"big": 18446744073709551617, "float": 0.30000000000000004, "tiny": 5e-324}'
    driver.ack_results([held], [text])
    status = driver.job_status(ident)
    assert status is not None and status.state == SUCCEEDED
    assert status.result == {"big": 2**64 + 1, "float": 0.1 + 0.2, "tiny": 5e-324}


def test_kept_results_expire_on_their_own(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver(results_ttl=0.5)
    ident = _one(driver)
    (held,) = driver.reserve(["q"])
    driver.ack_results([held], ["1"])
    key = driver.settings.base + "r:" + ident
    assert driver.job_status(ident) is not None
    assert 0 < client.pttl(key) <= 1500
    time.sleep(0.6)
    assert driver.job_status(ident) is None  # past results_ttl by the caller's clock
    deadline = time.time() + 3
    while client.exists(key) and time.time() < deadline:
        time.sleep(0.1)
    assert not client.exists(key)  # and gone from Redis by the key's expiry


def test_results_ttl_zero_keeps_nothing(make_driver: Callable[..., RedisDriver], client: redis.Redis) -> None:
    driver = make_driver("redis://127.0.0.1:6379/0?results_ttl=0")
    ident = _one(driver)
    (held,) = driver.reserve(["q"])
    driver.ack_results([held], ['"x"'])
    assert driver.job_status(ident) is None
    assert driver.stats("q").completed == 1
    assert not client.exists(driver.settings.base + "r:" + ident)


def test_a_bad_results_ttl_is_refused(make_driver: Callable[..., RedisDriver]) -> None:
    with pytest.raises(ConfigurationError, match="results_ttl"):
        make_driver("redis://127.0.0.1:6379/0?results_ttl=-1")
    with pytest.raises(ConfigurationError, match="results_ttl"):
        make_driver("redis://127.0.0.1:6379/0?results_ttl=soon")


def test_cancelling_a_keyed_job_lets_the_next_of_its_key_run(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    first = _one(driver, key="account-7")
    second = _one(driver, key="account-7")
    assert driver.cancel(first) == CANCEL_REMOVED
    (held,) = driver.reserve(["q"])
    assert held.id == second
    status = driver.job_status(first)
    assert status is not None and (status.state, status.name, status.queue) == (CANCELLED, "t.x", "q")


def test_progress_is_kept_with_the_finished_job(make_driver: Callable[..., RedisDriver]) -> None:
    driver = make_driver()
    ident = _one(driver)
    (held,) = driver.reserve(["q"])
    driver.save_progress(held, Progress(9, 10, "almost", time.time()), "host:1")
    driver.ack_results([held], ["null"])
    status = driver.job_status(ident)
    assert status is not None and status.progress is not None
    assert (status.progress.done, status.progress.total, status.progress.note) == (9, 10, "almost")
    assert status.worker is None  # a finished job has no worker


def test_prune_drops_the_index_of_kept_results(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    driver = make_driver()
    for _ in range(3):
        _one(driver)
    driver.ack_results(driver.reserve(["q"], limit=3), ["1", "2", "3"])
    index = driver.settings.base + "rk:succeeded"
    assert client.zcard(index) == 3
    time.sleep(0.01)
    driver.prune(0.0)
    assert client.zcard(index) == 0
    assert client.zcard(driver.settings.base + "q:q:rk:succeeded") == 0
    assert not list(client.scan_iter(match=driver.settings.base + "r:*"))


def test_prune_drops_kept_results_indexed_by_an_earlier_version(
    make_driver: Callable[..., RedisDriver], client: redis.Redis
) -> None:
    # Earlier versions indexed every kept result in {p}:r as well; prune still reads it.
    driver = make_driver()
    base = driver.settings.base
    client.set(base + "r:old", "1.0\n\n{}", px=60_000)
    client.zadd(base + "r", {"old": 1.0})
    driver.prune(0.0)
    assert client.zcard(base + "r") == 0
    assert client.get(base + "r:old") is None
