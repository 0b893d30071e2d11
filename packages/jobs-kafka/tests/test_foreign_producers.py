"""Records written to a queue topic by another service (not through the driver) run when due."""

from __future__ import annotations

import json
import pathlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from jobs_core import JobsApp, job
from jobs_core.message import Message
from jobs_kafka import KafkaDriver

from .helpers import reserve_until

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "drivers" / "kafka.md"


def _write(bootstrap: str, topic: str, *records: tuple[bytes | None, dict[str, Any]]) -> None:
    """Write ``(key, envelope)`` records to partition 0 of ``topic`` as a plain producer would."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, envelope in records:
        producer.produce(topic, json.dumps(envelope).encode(), key, partition=0)
    assert producer.flush(10) == 0


def _envelope(name: str, payload: object, queue: str, **fields: object) -> dict[str, Any]:
    return {"v": 1, "id": uuid.uuid4().hex, "name": name, "payload": payload, "queue": queue, **fields}


def test_a_record_due_later_runs_at_its_due_time_and_the_records_behind_it_at_once(
    make_driver: Callable[..., KafkaDriver], kafka_bootstrap: str
) -> None:
    ran: dict[str, float] = {}
    lock = threading.Lock()

    @job(name="billing.charge")
    def charge(payload: dict[str, str]) -> None:
        """Records when it ran."""
        with lock:
            ran[payload["which"]] = time.time()

    app = JobsApp(make_driver(partitions=1).url)
    try:
        driver = app.driver
        assert isinstance(driver, KafkaDriver)
        assert driver.join(["billing"], timeout=30)  # the worker's driver: it holds the partition
        app.register(charge)
        worker = app.worker("billing", max_jobs=2, install_signal_handlers=False)
        thread = threading.Thread(target=worker.run)
        thread.start()
        now = time.time()
        due = now + 5.0
        topic = driver.names.queue("billing")
        _write(
            kafka_bootstrap,
            topic,
            (
                None,
                _envelope("billing.charge", {"which": "later"}, "billing", created_at=now, available_at=due),
            ),
            (None, _envelope("billing.charge", {"which": "now"}, "billing", created_at=now)),
        )
        written = time.time()
        thread.join(40)
        assert not thread.is_alive(), f"ran only {sorted(ran)} within 40 s"
    finally:
        app.close()
    assert ran["later"] >= due, f"ran {due - ran['later']:.3f} s before its due time"
    assert ran["now"] < due, "the due record waited behind the one due later"
    assert ran["now"] - written < 4.0, f"the due record ran {ran['now'] - written:.2f} s after it was written"


def test_the_smallest_envelope_runs_at_once_and_a_record_key_orders_its_jobs(
    driver: KafkaDriver, kafka_bootstrap: str
) -> None:
    assert driver.join(["orders"], timeout=30)
    topic = driver.names.queue("orders")
    smallest = {"id": uuid.uuid4().hex, "name": "orders.ship", "queue": "orders"}
    _write(
        kafka_bootstrap,
        topic,
        (None, smallest),
        (b"acct-1", _envelope("orders.ship", 1, "orders")),
        (b"acct-1", _envelope("orders.ship", 2, "orders")),
    )
    got = reserve_until(driver, ["orders"], 3, timeout=5)
    assert [d.message.payload for d in got] == [None, 1]  # the second of acct-1 waits for the first
    assert got[0].message.id == smallest["id"] and got[0].message.key is None
    assert got[1].message.key == "acct-1"
    driver.ack_many(got)
    (last,) = reserve_until(driver, ["orders"], 1)
    assert (last.message.payload, last.message.key) == (2, "acct-1")


def test_a_record_due_later_without_created_at_waits_too(driver: KafkaDriver, kafka_bootstrap: str) -> None:
    assert driver.join(["late"], timeout=30)
    due = time.time() + 2.0
    _write(kafka_bootstrap, driver.names.queue("late"), (None, _envelope("x", 1, "late", available_at=due)))
    got = reserve_until(driver, ["late"], 1, timeout=20)
    assert got and time.time() >= due and got[0].message.available_at == due


def _docs_section() -> str:
    text = DOCS.read_text()
    return text[
        text.index("## Jobs written by other services") : text.index("## Failures and the dead-letter topic")
    ]


def test_the_documented_envelope_and_python_producer_write_a_job_that_waits_for_its_due_time(
    driver: KafkaDriver, kafka_bootstrap: str
) -> None:
    section = _docs_section()
    (record,) = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    documented = Message.decode(record.encode())
    assert (documented.name, documented.queue, documented.key) == ("billing.charge", "billing", "customer-42")
    assert documented.available_at - documented.created_at == 3600
    (example,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    topic = driver.names.queue("billing")
    assert driver.join(["billing"], timeout=30)
    exec(example.replace("localhost:9092", kafka_bootstrap).replace('"jobs-billing"', repr(topic)), {})
    assert driver.reserve(["billing"], limit=1, lease=60, timeout=2.0) == []  # due in an hour
    deadline = time.monotonic() + 20
    while driver.stats("billing").delayed != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (driver.stats("billing").delayed, driver.stats("billing").pending) == (1, 0)
