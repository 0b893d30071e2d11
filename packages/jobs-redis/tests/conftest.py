"""Fixtures: the Redis under test (``JOBS_TEST_REDIS_URL``) and a fresh key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from jobs_redis import RedisDriver
from jobs_redis.testing import delete_prefix, require_server

#: The server the tests use; its database number keeps them apart from other users.
REDIS_URL = os.environ.get("JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis under test; in CI (``CI=true``) a missing server fails the tests, elsewhere skips them."""
    require_server(REDIS_URL)
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_driver(redis_url: str, prefix: str) -> Iterator[Callable[..., RedisDriver]]:
    """Build drivers on this test's prefix (``make_driver(url=..., **options)``); all closed and the keys
    deleted afterwards."""
    built: list[RedisDriver] = []
    urls: set[str] = set()

    def make(url: str | None = None, **options: Any) -> RedisDriver:
        base = url or redis_url
        sep = "&" if "?" in base else "?"
        full = f"{base}{sep}prefix={prefix}" if "prefix=" not in base else base
        driver = RedisDriver(full, **options)
        built.append(driver)
        urls.add(full.split("&wait")[0])
        return driver

    yield make
    for driver in built:
        driver.close()
    for url in urls:
        delete_prefix(url)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the same database."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()
