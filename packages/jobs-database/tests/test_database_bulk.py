"""Large batches: streamed to PostgreSQL with COPY, inserted in one transaction elsewhere."""

from __future__ import annotations

from collections.abc import Callable

from jobs_core import JobsApp, Message, job
from jobs_core.message import MessageBatch
from jobs_database import DatabaseDriver


@job(name="bulk.record")
def record(payload: object) -> None:
    """Does nothing."""


def test_a_large_dispatch_keeps_order_ids_and_unique_keys(make_driver: Callable[..., DatabaseDriver]) -> None:
    driver = make_driver()
    plain = [Message(name="n", queue="bulk", payload={"n": n}) for n in range(1200)]
    keyed = [Message(name="n", queue="bulk", payload={"k": n}, unique_key=f"key-{n % 3}") for n in range(6)]
    batch = plain[:600] + keyed + plain[600:]
    ids = driver.enqueue(batch)
    assert ids[:600] == [m.id for m in plain[:600]]
    assert ids[606:] == [m.id for m in plain[600:]]
    # Three distinct keys: the first message holding each is stored, its repeats are dropped.
    assert ids[600:606] == [m.id for m in keyed[:3]] + [None, None, None]
    got = driver.reserve(["bulk"], limit=2000, lease=30)
    assert len(got) == 1203
    order = [d.message.payload["n"] for d in got if "n" in d.message.payload]
    assert order == list(range(1200))


def test_a_bulk_dispatch_builds_its_messages_lazily_and_stores_them_all(db_url: str) -> None:
    app = JobsApp(db_url)
    try:
        app.register(record)
        messages = app._template(record).to_messages([{"i": i} for i in range(1234)], queue="lazy")
        assert isinstance(messages, MessageBatch)
        assert len(messages) == 1234
        assert messages[-1].payload == {"i": 1233}
        assert [m.payload["i"] for m in messages[500:503]] == [500, 501, 502]
        ids = app.queue.enqueue(messages)
        assert ids == [m.id for m in messages]
        assert app.stats("lazy")["pending"] == 1234
        assert app.dispatch_many(record, [{"i": i} for i in range(700)], queue="lazy")[0] is not None
        assert app.stats("lazy")["pending"] == 1934
    finally:
        app.close()
