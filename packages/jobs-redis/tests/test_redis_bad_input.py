"""Bad input: each a clear error or a failed-store entry, never a stuck worker."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from jobs_core.errors import BackendUnavailable, ConfigurationError, InvalidURL
from jobs_core.message import Message
from jobs_core.plugins import DriverRegistry
from jobs_redis import CorruptKey, RedisDriver, ReplicasNotReached, ScriptingNotAllowed


def test_every_scheme_reaches_the_driver() -> None:
    registry = DriverRegistry()
    for scheme in ("redis", "rediss", "redis+sentinel", "redis+cluster"):
        assert registry.get(scheme) is RedisDriver


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://", "no host"),
        ("redis://localhost:notaport/0", "port 'notaport' is not a number"),
        ("redis://localhost:6379/x", "database 'x' is not a number"),
        ("redis://a:1,b:2/0", r"several hosts need redis\+sentinel:// or redis\+cluster://"),
        ("redis+cluster://localhost:7000/3", "a Redis Cluster has only database 0"),
        ("memcached://localhost", "not a Redis URL"),
    ],
)
def test_a_wrong_url_is_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(InvalidURL, match=problem):
        RedisDriver(url)


@pytest.mark.parametrize("prefix", ["has space", "a{b}", "{jobs}", "", "-lead", "x" * 65])
def test_a_prefix_with_spaces_or_braces_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="redis key prefix"):
        RedisDriver("redis://127.0.0.1:6379/0", prefix=prefix)


def test_unknown_options_and_bad_numbers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*colour"):
        RedisDriver("redis://127.0.0.1:6379/0?colour=blue")
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        RedisDriver("redis://127.0.0.1:6379/0?wait_replicas=many")
    with pytest.raises(ConfigurationError, match="not available with redis\\+cluster"):
        RedisDriver("redis+cluster://127.0.0.1:7000?wait_replicas=1")


def test_the_password_never_shows() -> None:
    driver = RedisDriver("redis://user:s3cret-pw@127.0.0.1:1/0?connect_timeout=0.2")
    try:
        assert "s3cret-pw" not in repr(driver)
        with pytest.raises(BackendUnavailable) as caught:
            driver.ping()
        assert "s3cret-pw" not in str(caught.value)
    finally:
        driver.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_server_is_backend_unavailable_naming_it() -> None:
    port = _free_port()
    driver = RedisDriver(f"redis://127.0.0.1:{port}/0?connect_timeout=0.5")
    try:
        with pytest.raises(BackendUnavailable, match=f"Redis at 127.0.0.1:{port} is unavailable"):
            driver.ping()
        with pytest.raises(BackendUnavailable):
            driver.enqueue([Message(name="t.x", queue="q")])
        with pytest.raises(BackendUnavailable):
            driver.reserve(["q"], timeout=0.1)
    finally:
        driver.close()


@pytest.fixture
def user_without_scripting(client: redis.Redis, redis_url: str) -> Iterator[str]:
    name = f"jobs_noscript_{uuid.uuid4().hex[:8]}"
    client.acl_setuser(
        name, enabled=True, passwords=["+pw-noscript"], keys=["*"], commands=["+@all", "-@scripting"]
    )
    host = redis_url.split("//", 1)[1]
    yield f"redis://{name}:pw-noscript@{host}"
    client.acl_deluser(name)


def test_a_user_without_scripting_rights_gets_a_clear_error(user_without_scripting: str) -> None:
    driver = RedisDriver(user_without_scripting)
    try:
        with pytest.raises(ScriptingNotAllowed, match=r"may not run Lua scripts.*\+@scripting"):
            driver.ping()
        with pytest.raises(ScriptingNotAllowed):
            driver.enqueue([Message(name="t.x", queue="q")])
    finally:
        driver.close()


def test_a_string_written_over_a_job_key_goes_to_the_failed_store(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    poisoned, fine = Message(name="t.a", queue="q"), Message(name="t.b", queue="q")
    driver.enqueue([poisoned, fine])
    client.delete(f"{{{prefix}}}:j:{poisoned.id}")
    client.set(f"{{{prefix}}}:j:{poisoned.id}", b"\xffnot a job")
    (delivery,) = driver.reserve(["q"], limit=5)
    assert delivery.message.id == fine.id
    (entry,) = driver.failed()
    assert entry.id == poisoned.id
    assert "holds a string, not a job hash" in entry.error
    assert entry.raw is not None and "not a job" in entry.raw


def test_a_member_without_a_record_goes_to_the_failed_store(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    driver.enqueue([Message(name="t.a", queue="q")])
    client.zadd(f"{{{prefix}}}:q:q:r:0", {"0000000000000000:ghost": 1.0})
    assert len(driver.reserve(["q"], limit=5)) == 1
    (entry,) = driver.failed()
    assert "has no job record" in entry.error
    assert driver.stats("q").failed == 1


def test_a_queue_key_of_the_wrong_type_is_named_in_the_error(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    client.set(f"{{{prefix}}}:q:q:l", "poison")
    with pytest.raises(CorruptKey, match=rf"key '\{{{prefix}\}}:q:q:l' holds a string, not the zset"):
        driver.reserve(["q"])
    client.delete(f"{{{prefix}}}:q:q:l")
    assert driver.reserve(["q"]) == []


def test_wait_replicas_without_replicas_refuses_the_enqueue(
    make_driver: Callable[..., RedisDriver], redis_url: str
) -> None:
    driver = make_driver(wait_replicas=1, wait_timeout=0.05)
    message = Message(name="t.x", queue="q")
    with pytest.raises(ReplicasNotReached, match="0 of 1 replica"):
        driver.enqueue([message])
    # the job is on the master, and sending it again stores it once
    with pytest.raises(ReplicasNotReached):
        driver.enqueue([message])
    assert driver.stats("q").pending == 1


def test_a_full_server_is_storage_full_and_the_batch_is_refused_whole() -> None:
    from jobs_core.errors import StorageFull
    from jobs_redis.testing.servers import Servers, free_port

    try:
        servers = Servers()
        port = free_port()
        servers.start(port, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    except ConfigurationError as exc:
        import os

        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    with servers:
        driver = RedisDriver(f"redis://127.0.0.1:{port}/0")
        try:
            with pytest.raises(StorageFull, match="out of memory"):
                for _ in range(200):
                    driver.enqueue([Message(name="t.x", queue="q", payload="x" * 10_000) for _ in range(20)])
            stored = driver.stats("q").pending
            assert stored % 20 == 0  # no batch was cut in half
        finally:
            driver.close()


def test_a_poisoned_queue_key_refuses_the_whole_batch_naming_the_key(
    make_driver: Callable[..., RedisDriver], client: redis.Redis, prefix: str
) -> None:
    driver = make_driver()
    client.set(f"{{{prefix}}}:q:second:r:0", "poison")
    batch = [Message(name="t.a", queue="first"), Message(name="t.b", queue="second")]
    with pytest.raises(CorruptKey, match=rf"key \{{{prefix}\}}:q:second:r:0 holds a string, not a zset"):
        driver.enqueue(batch)
    assert driver.stats("first").pending == 0  # nothing of the batch was stored
    client.set(f"{{{prefix}}}:w:first", "poison")  # a wake-up list is best effort
    client.delete(f"{{{prefix}}}:q:second:r:0")
    assert driver.enqueue(batch) == [m.id for m in batch]
