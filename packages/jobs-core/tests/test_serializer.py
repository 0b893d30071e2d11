"""JSON encoding gives the same results with and without orjson."""

from __future__ import annotations

import enum
import json

import pytest
from jobs_core import serializer
from jobs_core.errors import MalformedMessage, PayloadNotJSON
from jobs_core.message import Message

BACKENDS = ["json"] + (["orjson"] if serializer._orjson is not None else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(serializer, "_orjson", None)
    return str(request.param)


ROUND_TRIPS = [
    {"a": 1, "b": [1, 2.5, None, True, False], "c": {"d": "é€😀"}},
    [2**63 - 1, -(2**63), 2**64 + 1, 10**30, -(10**40)],
    "digits in a string: 123456789012345678901234567890",
    {"nested": [[[[{"deep": 1}]]]]},
    0.1,
    1e300,
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_round_trip_is_exact(backend: str, value: object) -> None:
    encoded = serializer.dump_bytes(value)
    assert json.loads(encoded) == value
    decoded = serializer.loads(encoded)
    assert decoded == value
    assert type(decoded) is type(value)


def test_big_integers_keep_their_type(backend: str) -> None:
    decoded = serializer.loads(serializer.dump_bytes({"n": 10**30}))
    assert decoded["n"] == 10**30
    assert isinstance(decoded["n"], int)


def test_encoding_is_compact_utf8(backend: str) -> None:
    assert serializer.dump_bytes({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"a": {1, 2}}, "$.a", "set"),
        ({"a": [1, (2, 3)]}, "$.a[1]", "tuple"),
        ({"a": float("nan")}, "$.a", "float (nan)"),
        ({"a": b"x"}, "$.a", "bytes"),
        ({"a": Colour.RED}, "$.a", "Colour"),
        ({"a": "\ud800"}, "$.a", "str with a lone surrogate"),
        ({1: "x"}, "$ key 1", "int"),
    ],
)
def test_non_json_is_refused_naming_path_and_type(
    backend: str, value: object, path: str, type_name: str
) -> None:
    with pytest.raises(PayloadNotJSON) as info:
        serializer.dump_bytes(value)
    assert info.value.path == path
    assert info.value.type_name == type_name


@pytest.mark.parametrize("text", [b"{", b"NaN", b"[Infinity]", b"\xff\xfe", b'{"a": 1,}'])
def test_bad_json_is_a_malformed_message(backend: str, text: bytes) -> None:
    with pytest.raises(MalformedMessage, match="not valid JSON"):
        serializer.loads(text)


def test_message_round_trip(backend: str) -> None:
    message = Message(name="x.y", payload={"n": 10**25, "s": "ü"}, headers={"h": "v"})
    assert Message.decode(message.encode()) == message


def test_message_with_bad_payload_is_refused_at_encode(backend: str) -> None:
    message = Message(name="x.y", payload={"when": object()})
    with pytest.raises(PayloadNotJSON, match=r"\$\.payload\.when"):
        message.encode()
