"""Test helpers: delete what a run wrote, as a conformance-suite plugin.

``pytest -p jobs_redis.testing --pyargs jobs_core.testing.conformance
--jobs-driver="redis://host/0?prefix={namespace}"`` removes every key of the
run's prefix when the run ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobs_redis.driver import RedisDriver


def require_server(url: str) -> None:
    """Skip the calling test if no Redis answers at ``url``; in CI (``CI=true``) fail it instead."""
    import os

    import redis

    try:
        redis.Redis.from_url(url.split("?", maxsplit=1)[0], socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}: {exc}")


def delete_prefix(url: str) -> int:
    """Delete every key of the prefix ``url`` names (``{prefix}:*``); return how many."""
    driver = RedisDriver(url)
    try:
        client: Any = driver._client
        removed = 0
        for key in client.scan_iter(match=driver.settings.base + "*", count=1000):
            removed += int(client.delete(key))
        return removed
    finally:
        driver.close()


@pytest.hookimpl(optionalhook=True)
def pytest_jobs_cleanup(config: pytest.Config, url: str, namespace: str) -> None:
    """Delete the keys of the run's prefix (the conformance suite's clean-up hook)."""
    if "{" + namespace + "}" in RedisDriver(url).settings.base:
        delete_prefix(url)
