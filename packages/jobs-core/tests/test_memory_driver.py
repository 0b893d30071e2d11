"""What is particular to the memory driver (the contract itself is the conformance suite's)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import InvalidURL, PayloadTooLarge
from jobs_core.message import Message


def _name() -> str:
    return f"unit-{uuid.uuid4().hex}"


def test_memory_url_without_a_name_gives_a_private_store() -> None:
    one, two = MemoryDriver("memory://"), MemoryDriver("memory://")
    one.enqueue([Message(name="n", queue="q")])
    assert two.reserve(["q"]) == []
    assert len(one.reserve(["q"])) == 1


def test_memory_url_with_a_name_shares_the_store() -> None:
    name = _name()
    one, two = MemoryDriver(f"memory://{name}"), MemoryDriver.from_config(None, {"name": name})
    one.enqueue([Message(name="n", queue="q")])
    assert len(two.reserve(["q"])) == 1


def test_a_foreign_url_is_refused() -> None:
    with pytest.raises(InvalidURL, match="not a memory URL"):
        MemoryDriver("redis://localhost")


def test_max_message_bytes_is_configurable() -> None:
    driver = MemoryDriver("memory://", max_message_bytes=300)
    with pytest.raises(PayloadTooLarge, match="300-byte limit"):
        driver.enqueue([Message(name="n", queue="q", payload="x" * 300)])


def test_close_wakes_a_blocked_reserver() -> None:
    driver = MemoryDriver(f"memory://{_name()}")
    done = threading.Event()

    def wait() -> None:
        driver.reserve(["q"], timeout=30)
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    driver.close()
    assert done.wait(5)
    thread.join()


def test_queues_lists_every_queue_used() -> None:
    driver = MemoryDriver()
    driver.enqueue([Message(name="n", queue="b"), Message(name="n", queue="a")])
    driver.inject_raw("c", b"junk")
    assert driver.queues() == ["a", "b", "c"]


def test_a_retried_raw_record_is_malformed_again() -> None:
    driver = MemoryDriver()
    driver.inject_raw("q", b"junk")
    assert driver.reserve(["q"]) == []
    (entry,) = driver.failed()
    assert entry.raw == "junk" and entry.name == ""
    assert driver.retry_failed(entry.id) is True
    assert driver.reserve(["q"]) == []
    assert [f.id for f in driver.failed()] == [entry.id]


def test_repr_names_the_driver_and_url() -> None:
    assert repr(MemoryDriver("memory://x-repr")) == "<MemoryDriver memory memory://x-repr>"
