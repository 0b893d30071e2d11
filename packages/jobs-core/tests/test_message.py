"""Messages and their JSON envelope; retry policies; the serializer."""

from __future__ import annotations

import re
import time

import pytest
from jobs_core import serializer
from jobs_core.errors import InvalidName, MalformedMessage, PayloadNotJSON, SerializationError
from jobs_core.message import (
    Delivery,
    FailedJob,
    Message,
    MessageBatch,
    QueueStats,
    RetryPolicy,
    new_id,
    new_ids,
    validate_queue_name,
)


def test_a_message_survives_encode_and_decode() -> None:
    msg = Message(
        name="a.b",
        payload={"x": [1, 2.5, "ü", None, True]},
        queue="q1",
        attempts=2,
        max_retries=4,
        retry=RetryPolicy("fixed", 3.0, 9.0, False),
        timeout=1.5,
        priority=-2,
        unique_key="k",
        unique_ttl=60.0,
        headers={"trace": "t"},
        last_error="boom",
    )
    assert Message.decode(msg.encode()) == msg
    assert Message.decode(msg.encode().decode()) == msg


def test_the_envelope_leaves_out_fields_at_their_default_and_decodes_to_the_same_message() -> None:
    now = time.time()
    plain = Message(name="a.b", payload={"i": 1}, queue="q1", available_at=now, created_at=now)
    body = plain.encode()
    assert serializer.loads(body) == {
        "v": 1,
        "id": plain.id,
        "name": "a.b",
        "payload": {"i": 1},
        "queue": "q1",
        "created_at": now,
    }
    assert Message.decode(body) == plain
    assert len(body) < len(serializer.dump_bytes(plain.to_dict())) / 2
    # the defaults are the dataclass's: a minimal envelope means what Message(...) means
    minimal = Message.decode(b'{"id": "x", "name": "a.b", "queue": "q1", "created_at": 5.0}')
    assert (minimal.max_retries, minimal.attempts, minimal.priority) == (3, 0, 0)
    assert (minimal.available_at, minimal.retry, minimal.headers) == (5.0, RetryPolicy(), {})
    # a field that differs from its default is written
    for changes in ({"max_retries": 0}, {"available_at": now + 10}, {"priority": 1}, {"attempts": 1}):
        changed = plain.replace(**changes)
        key = next(iter(changes))
        assert serializer.loads(changed.encode())[key] == changes[key]
        assert Message.decode(changed.encode()) == changed


def test_new_ids_are_unique_and_time_ordered() -> None:
    ids = []
    for _ in range(50):
        ids.append(new_id())
        time.sleep(0.0005)
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


def test_bulk_ids_share_the_layout_of_single_ids_and_never_repeat() -> None:
    ids = new_ids(20_000)
    assert len(set(ids)) == 20_000
    layout = re.compile(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}")
    assert all(layout.fullmatch(i) for i in ids)
    assert layout.fullmatch(new_id())
    assert ids[0][:12] <= new_id()[:12]


def _common(**changes: object) -> dict[str, object]:
    fields = Message(name="bulk.job", queue="q1", headers={"h": "v"}).__dict__.copy()
    del fields["id"], fields["payload"]
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "payloads",
    [
        [{"i": 1}, "text", None, [1, 2.5, True], {"ü": "\u2603", "nested": {"a": [None]}}],
        [2**70, {"big": -(2**80)}],  # beyond 64 bits: the exact (standard library) encoder
    ],
)
def test_bulk_built_messages_carry_an_encoding_equal_to_their_own(payloads: list[object]) -> None:
    messages = Message.build_many(_common(), payloads)
    assert [m.payload for m in messages] == payloads
    assert len({m.id for m in messages}) == len(payloads)
    for message in messages:
        spliced = message.encode()
        assert Message.decode(spliced) == message
        assert serializer.loads(spliced) == message.envelope()


def test_a_name_that_looks_like_the_splice_marks_still_encodes_correctly() -> None:
    name = "\x01jobs-payload\x01"
    messages = Message.build_many(_common(name=name), [{"i": 1}, {"i": 2}])
    assert [Message.decode(m.encode()).name for m in messages] == [name, name]
    assert [Message.decode(m.encode()).payload for m in messages] == [{"i": 1}, {"i": 2}]


def test_a_replaced_message_is_encoded_afresh() -> None:
    (message,) = Message.build_many(_common(), [{"i": 1}])
    changed = message.replace(attempts=2, payload={"i": 9})
    decoded = Message.decode(changed.encode())
    assert (decoded.attempts, decoded.payload) == (2, {"i": 9})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be an object"),
        (b'{"name": "x"}', "lacks id, queue"),
        (b'{"id": "1", "name": "x", "queue": "q", "headers": {"a": 1}}', "headers"),
        (b'{"id": "1", "name": "x", "queue": "q", "attempts": "many"}', "invalid message envelope"),
        (b'{"id": "1", "name": "x", "queue": "q", "retry": {"backoff": "linear"}}', "unknown backoff"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_decoding_a_malformed_record_names_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        Message.decode(body)


@pytest.mark.parametrize("name", ["default", "a", "Q-1.x_y", "9" * 100])
def test_valid_queue_names(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["", " ", "_x", "a b", "a/b", "ü", "9" * 101, None, 5])
def test_invalid_queue_names(name: object) -> None:
    with pytest.raises(InvalidName, match="invalid queue name"):
        validate_queue_name(name)


def test_fixed_and_exponential_retry_delays() -> None:
    fixed = RetryPolicy("fixed", 5.0, 100.0, jitter=False)
    assert [fixed.delay_for(n) for n in (1, 2, 10)] == [5.0, 5.0, 5.0]
    exponential = RetryPolicy("exponential", 1.0, 10.0, jitter=False)
    assert [exponential.delay_for(n) for n in (1, 2, 3, 4, 5, 100)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_stays_in_the_upper_half() -> None:
    policy = RetryPolicy("exponential", 4.0, 100.0, jitter=True)
    draws = [policy.delay_for(2) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in draws)
    assert len(set(draws)) > 1


def test_retry_policy_round_trips_through_its_dict() -> None:
    policy = RetryPolicy("fixed", 2.0, 3.0, False)
    assert RetryPolicy.from_dict(policy.to_dict()) == policy


def test_queue_stats_add_up_and_keep_unknown_completed() -> None:
    total = QueueStats(1, 2, 3, 4, 5) + QueueStats(1, 1, 1, 1, 1)
    assert total.to_dict() == {"pending": 2, "delayed": 3, "reserved": 4, "completed": 5, "failed": 6}
    assert (QueueStats(completed=None) + QueueStats(completed=3)).completed is None


def test_delivery_and_failed_job_expose_their_message() -> None:
    msg = Message(name="n", queue="q")
    delivery = Delivery(msg, "r", 1.0)
    assert (delivery.id, delivery.queue) == (msg.id, "q")
    entry = FailedJob(msg.id, "n", "q", None, 1, "err", 2.0, message=msg)
    assert entry.to_dict()["error"] == "err"
    assert "message" not in entry.to_dict()


def test_check_json_refuses_what_json_cannot_hold() -> None:
    serializer.check_json({"a": [1, 2.0, "s", None, True, {"b": []}]})
    for value, path in [
        ({"a": (1, 2)}, "$.a"),
        ([1, {1: "x"}], "$[1] key 1"),
        ({"n": float("inf")}, "$.n"),
        (b"bytes", "$"),
    ]:
        with pytest.raises(PayloadNotJSON) as caught:
            serializer.check_json(value)
        assert caught.value.path == path


def test_dumps_raises_payload_not_json_instead_of_a_bare_type_error() -> None:
    with pytest.raises(PayloadNotJSON, match=r"\$\.x\[0\].*set"):
        serializer.dumps({"x": [{1}]})
    with pytest.raises(SerializationError):
        serializer.dumps(float("nan"))
    assert serializer.dumps({"ü": 1}) == '{"ü":1}'


def test_loads_raises_malformed_message() -> None:
    with pytest.raises(MalformedMessage):
        serializer.loads("{")
    assert serializer.loads('{"a": [1]}') == {"a": [1]}


def test_a_message_batch_reads_like_a_list_and_builds_on_demand() -> None:
    payloads = [{"i": i} for i in range(1234)]
    batch = MessageBatch(_common(), payloads)
    assert len(batch) == 1234 and batch._ids == []
    assert batch[3].payload == {"i": 3}
    assert len(batch._ids) == MessageBatch.CHUNK  # one chunk encoded, not the whole batch
    assert sum(m is not None for m in batch._built) == 1  # and one message object built
    assert batch[-1].payload == {"i": 1233}
    assert [m.payload["i"] for m in batch[498:503]] == [498, 499, 500, 501, 502]
    assert [m.payload["i"] for m in batch[10:0:-5]] == [10, 5]
    assert [m.payload for m in batch] == payloads
    assert len({m.id for m in batch}) == 1234
    assert batch[7] is batch[7]  # built once
    with pytest.raises(IndexError):
        batch[1234]
    assert Message.decode(batch[1000].encode()) == batch[1000]


def test_a_message_batch_gives_ids_and_encodings_without_message_objects() -> None:
    batch = MessageBatch(_common(queue="q7"), [{"i": i} for i in range(1100)])
    assert batch.common["queue"] == "q7"
    ids, bodies = batch.encoded(500, 1000)
    assert len(ids) == len(bodies) == 500
    assert all(m is None for m in batch._built)
    all_ids = batch.ids()
    assert all_ids[500:1000] == ids and len(set(all_ids)) == 1100
    message = batch[700]  # built later, from the same id and encoding
    assert message.id == all_ids[700] and message.encode() == bodies[200]
    assert Message.decode(bodies[200]) == message


def test_a_message_batch_knows_its_largest_encoding_before_encoding_it() -> None:
    payloads: list[object] = [{"i": i} for i in range(1200)]
    payloads[1100] = {"text": "x" * 5000, "big": 2**70}  # beyond 64 bits: the standard encoder
    batch = MessageBatch(_common(), payloads)
    largest = batch.largest()
    assert batch._ids == []  # nothing encoded yet
    _, bodies = batch.encoded()
    assert largest == max(map(len, bodies)) == len(bodies[1100])
    assert [Message.decode(b).payload for b in bodies] == payloads


def test_a_message_batch_whose_envelope_cannot_be_spliced_still_encodes_each_message() -> None:
    batch = MessageBatch(_common(name="\x01jobs-id\x01"), [{"i": i} for i in range(3)])
    ids, bodies = batch.encoded()
    assert [Message.decode(b).payload for b in bodies] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [m.id for m in batch] == ids
