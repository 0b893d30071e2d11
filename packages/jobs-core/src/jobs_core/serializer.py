"""JSON encoding of payloads and messages. No pickle, anywhere.

A payload is refused when it is dispatched, not when a worker reads it: the
error names the path and type of the first value JSON cannot hold.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobs_core.errors import MalformedMessage, PayloadNotJSON, SerializationError

JSONValue = Any
"""A value made only of ``dict`` (str keys), ``list``, ``str``, ``int``,
``float`` (finite), ``bool`` and ``None``."""


def check_json(value: object, path: str = "$") -> None:
    """Raise :class:`PayloadNotJSON` if ``value`` is not plain JSON data.

    Tuples, sets, bytes, datetimes, NaN and non-string dict keys are refused,
    so that what a worker receives is exactly what was dispatched.
    """
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise PayloadNotJSON(where, f"float ({item!r})")
            continue
        if isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]"))
            continue
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise PayloadNotJSON(f"{where} key {key!r}", type(key).__name__)
                stack.append((sub, f"{where}.{key}"))
            continue
        raise PayloadNotJSON(where, type(item).__name__)


def dumps(value: JSONValue) -> str:
    """Encode JSON data compactly (UTF-8 safe, no NaN).

    Raises :class:`PayloadNotJSON` naming the path and type of the first value
    JSON cannot hold.
    """
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        check_json(value)
        raise SerializationError(f"cannot encode as JSON: {exc}") from exc


def loads(text: str | bytes) -> JSONValue:
    """Decode JSON text, raising :class:`MalformedMessage` on bad input."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not valid JSON: {exc}") from exc
