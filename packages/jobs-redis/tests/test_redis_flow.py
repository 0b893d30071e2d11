"""Flow-control state on Redis: what the conformance suite cannot see from outside."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from jobs_redis import CorruptKey, RedisDriver


def test_rate_limit_stamps_keep_every_digit_and_follow_the_order_of_grants(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    first = driver.take_tokens("api", 10, 60.0, want=2)
    assert first.granted == 2
    # A caller whose clock runs 5 s ahead stamps its grant 5 s later ...
    ahead = repr(time.time() + 5.0)
    granted, at, _ = driver._run("take_tokens", ["api", 10, repr(60.0), 1, ahead], "test")
    assert (int(granted), at.decode()) == (1, ahead)
    # ... and a caller on the true clock granted after it is stamped no earlier.
    later = driver.take_tokens("api", 10, 60.0, want=1)
    assert later.granted == 1
    assert later.at == float(ahead)
    entries: list[bytes] = client.lrange(f"{{{prefix}}}:rl:api", 0, -1)  # type: ignore[assignment]
    window = [entry.decode() for entry in entries]
    assert window == [f"{first.at!r} 2", f"{ahead} 1", f"{ahead} 1"]


def test_rate_limit_and_slot_keys_expire_once_unused(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    driver.take_tokens("api", 10, 3.0)
    driver.acquire_slot("db", 2, "holder", 4.0)
    assert 0 < client.pttl(f"{{{prefix}}}:rl:api") <= 4000
    assert 4000 < client.pttl(f"{{{prefix}}}:cl:db") <= 5000
    driver.release_slot("db", "holder")
    assert client.zcard(f"{{{prefix}}}:cl:db") == 0


def test_a_flow_key_of_the_wrong_type_is_named_and_nothing_is_granted(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    client.set(f"{{{prefix}}}:rl:api", "poison")
    client.set(f"{{{prefix}}}:cl:db", "poison")
    with pytest.raises(CorruptKey, match=rf"\{{{prefix}\}}:rl:api holds a string, not a list"):
        driver.take_tokens("api", 10, 60.0)
    with pytest.raises(CorruptKey, match=rf"\{{{prefix}\}}:cl:db holds a string, not a zset"):
        driver.acquire_slot("db", 2, "holder", 60.0)
    client.delete(f"{{{prefix}}}:rl:api", f"{{{prefix}}}:cl:db")
    assert driver.take_tokens("api", 10, 60.0).granted == 1
    assert driver.acquire_slot("db", 2, "holder", 60.0)
