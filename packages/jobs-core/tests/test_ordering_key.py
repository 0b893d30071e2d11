"""The ordering key of a dispatch: ``Job.key(name, concurrency=1)``, its checks and its envelope fields."""

from __future__ import annotations

import json

import pytest
from jobs_core import Job, job
from jobs_core.drivers.memory import MemoryDriver
from jobs_core.errors import ConfigurationError, MalformedMessage
from jobs_core.message import Message, MessageBatch


class Charge(Job):
    job_name = "tests.charge"

    def handle(self, payload: object) -> None:
        """Does nothing."""


@job(name="tests.refund")
def refund(payload: object) -> None:
    """Does nothing."""


def test_key_sets_the_key_and_concurrency_of_one_dispatch() -> None:
    message = Charge().key("customer-42", concurrency=3).to_message({"n": 1})
    assert (message.key, message.key_concurrency) == ("customer-42", 3)
    assert (Charge().to_message(None).key, Charge().to_message(None).key_concurrency) == (None, 1)
    assert refund.key("c-1").to_message(None).key == "c-1"
    assert Charge().option("key") is None and Charge().option("key_concurrency") == 1


def test_a_bulk_dispatch_shares_the_key() -> None:
    batch = Charge().key("k").to_messages(range(MessageBatch.CHUNK + 1))
    assert isinstance(batch, MessageBatch)
    assert {(m.key, m.key_concurrency) for m in batch} == {("k", 1)}
    assert all(json.loads(body)["key"] == "k" for body in batch.encoded()[1])


@pytest.mark.parametrize(
    ("key", "concurrency", "problem"),
    [
        ("", 1, r"key\(\) must be a string of 1 to 255 characters"),
        ("k" * 256, 1, r"key\(\) must be a string of 1 to 255"),
        (42, 1, r"key\(\) must be a string"),
        ("\udc00", 1, "no lone surrogates"),
        ("k", 0, r"key\(\) concurrency must be an int from 1 to 2147483647"),
        ("k", True, r"key\(\) concurrency must be an int"),
        ("k", 2**31, r"key\(\) concurrency must be an int"),
    ],
)
def test_a_bad_key_or_concurrency_is_refused_where_it_is_written(
    key: object, concurrency: object, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Charge().key(key, concurrency)  # type: ignore[arg-type]


def test_the_envelope_holds_the_key_only_when_there_is_one() -> None:
    plain = Message(name="x")
    assert "key" not in plain.envelope() and "key_concurrency" not in plain.envelope()
    keyed = Message(name="x", key="ü", key_concurrency=2)
    back = Message.decode(keyed.encode())
    assert (back.key, back.key_concurrency) == ("ü", 2)
    assert Message.from_dict(keyed.to_dict()) == keyed


@pytest.mark.parametrize(
    "fields",
    [
        {"key": 1},
        {"key": ""},
        {"key": "k" * 256},
        {"key": "k", "key_concurrency": 0},
        {"key_concurrency": "2"},
    ],
)
def test_a_bad_key_read_back_is_a_malformed_message(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedMessage, match="key"):
        Message.from_dict({"id": "1", "name": "x", "queue": "q", **fields})


def test_enqueue_refuses_a_message_with_a_bad_key_before_storing_anything() -> None:
    driver = MemoryDriver()
    with pytest.raises(ConfigurationError, match="message key"):
        driver.enqueue([Message(name="x", queue="q"), Message(name="x", queue="q", key="")])
    assert driver.reserve(["q"], limit=5) == []
