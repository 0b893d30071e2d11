"""``await Jobs.adispatch(...)``: dispatch from ``async def`` code without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from jobs_core import Jobs, job
from jobs_core.errors import PayloadNotJSON, UnsupportedOperation
from jobs_core.facade import set_default_app


@job(name="async_dispatch.welcome", queue="emails")
def welcome(payload: dict[str, str]) -> str:
    return payload["to"]


@pytest.fixture(autouse=True)
def fresh_default_app() -> Iterator[None]:
    previous = set_default_app(None)
    Jobs.configure("memory://")
    try:
        yield
    finally:
        current = set_default_app(previous)
        if current is not None:
            current.close()


def test_an_async_handler_dispatches_off_the_event_loop() -> None:
    stored_on: list[int] = []
    Jobs.listen("job.queued", lambda event: stored_on.append(threading.get_ident()))

    async def handler() -> tuple[int, str | None, list[str | None]]:
        one = await Jobs.adispatch(welcome, {"to": "ada@example.com"})
        many = await Jobs.adispatch_many(welcome, [{"to": f"user{n}@example.com"} for n in range(3)])
        return threading.get_ident(), one, many

    loop_thread, one, many = asyncio.run(handler())
    assert isinstance(one, str) and len(many) == 3 and all(isinstance(i, str) for i in many)
    assert len(stored_on) == 4
    assert loop_thread not in stored_on  # the driver call ran in a thread, not on the loop
    assert Jobs.work("emails") == 4
    assert Jobs.stats("emails")["completed"] == 4


def test_adispatch_checks_the_payload_before_anything_is_stored() -> None:
    async def handler() -> None:
        with pytest.raises(PayloadNotJSON, match=r"\$\.when"):
            await Jobs.adispatch(welcome, {"when": {1, 2}})
        with pytest.raises(PayloadNotJSON):
            await Jobs.adispatch_many(welcome, [{"to": "a"}, {"when": {1}}])

    asyncio.run(handler())
    assert Jobs.stats("emails")["pending"] == 0


def test_adispatch_with_a_transaction_needs_a_driver_that_has_them() -> None:
    async def handler() -> None:
        with pytest.raises(UnsupportedOperation, match="transactional_enqueue"):
            await Jobs.adispatch(welcome, {"to": "a"}, transaction=object())

    asyncio.run(handler())


def test_adispatch_keeps_delay_and_queue_overrides() -> None:
    async def handler() -> None:
        await Jobs.adispatch(welcome, {"to": "a"}, queue="later", delay=60)
        await Jobs.adispatch(welcome.on_queue("urgent"), {"to": "b"})

    asyncio.run(handler())
    assert Jobs.stats("later")["delayed"] == 1
    assert Jobs.stats("urgent")["pending"] == 1
