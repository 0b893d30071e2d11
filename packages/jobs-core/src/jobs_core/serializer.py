"""JSON encoding of payloads and messages. No pickle, anywhere.

A payload is refused when it is dispatched, not when a worker reads it: the
error names the path and type of the first value JSON cannot hold.

Plain JSON data means ``dict`` (str keys), ``list``, ``str`` (valid Unicode),
``int``, finite ``float``, ``bool`` and ``None``. When
`orjson <https://pypi.org/project/orjson/>`_ is installed
(``pip install "jobs-core[fast]"``) it encodes and decodes; otherwise the
standard library does, with the same results (integers beyond 64 bits, which
orjson does not hold exactly, always go through the standard library).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from jobs_core.errors import MalformedMessage, PayloadNotJSON, PayloadOutOfRange, SerializationError
from jobs_core.limits import MAX_INT_BITS, MAX_NESTING

_orjson: Any
try:  # optional accelerator
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

JSONValue = Any
"""A value made only of ``dict`` (str keys), ``list``, ``str``, ``int``,
``float`` (finite), ``bool`` and ``None``."""

#: A run of 20 digits, or a minus sign and 19 digits, may be an integer beyond
#: 64 bits (orjson holds -2**63 to 2**64 - 1), which orjson would read as a
#: float. Found by mapping every digit to "0", "-" to itself and everything
#: else to " ", then looking for those runs: a few times faster than a regular
#: expression.
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 45 if i == 45 else 32 for i in range(256))
_LONG_DIGITS = b"0" * 20
_LONG_NEGATIVE = b"-" + b"0" * 19
#: Integers strictly inside this bound need no size check.
_BIG_INT = 2**64

#: Which JSON library encodes and decodes: ``"orjson"`` or ``"json"``.
BACKEND = "orjson" if _orjson is not None else "json"

#: ``orjson.dumps`` when orjson is installed, else ``None``: for hot loops over
#: values already checked with :func:`check_json`. It raises ``TypeError`` for
#: an integer beyond 64 bits, which :func:`dump_bytes` encodes.
FAST_DUMPS: Callable[[Any], bytes] | None = None if _orjson is None else _orjson.dumps

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]}... is infinity when parsed as a float")
    return value


# Like orjson: NaN and Infinity literals, and numbers too large for a float, are not JSON data.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _is_plain(value: object) -> bool:
    """Fast check without building paths; :func:`check_json` explains a failure."""
    if type(value) is dict:
        # The common payload, an object of ASCII keys and scalar values, without a stack.
        for key, sub in value.items():
            kind = type(sub)
            if not (
                type(key) is str
                and key.isascii()
                and (
                    (kind is int and -_BIG_INT < sub < _BIG_INT)
                    or sub is None
                    or kind is bool
                    or (kind is str and sub.isascii())
                )
            ):
                return _is_plain_deep(value)
        return True
    return _is_plain_deep(value)


def _is_plain_deep(value: object) -> bool:
    """Check a level of nesting at a time, so that the depth is known without a stack of pairs."""
    level = [value]
    depth = 0
    while level:
        depth += 1  # a container in ``level`` nests ``depth`` deep
        nested: list[object] = []
        extend = nested.extend
        for item in level:
            kind = type(item)
            if kind is str:
                text: str = item  # type: ignore[assignment]
                if not text.isascii():
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        return False
            elif kind is int:
                number: int = item  # type: ignore[assignment]
                if not -_BIG_INT < number < _BIG_INT and abs(number).bit_length() > MAX_INT_BITS:
                    return False
            elif kind is dict:
                if depth > MAX_NESTING:
                    return False
                for key in item:  # type: ignore[attr-defined]
                    if type(key) is not str:
                        return False
                    if not key.isascii():
                        try:
                            key.encode("utf-8")
                        except UnicodeEncodeError:
                            return False
                extend(item.values())  # type: ignore[attr-defined]
            elif kind is list:
                if depth > MAX_NESTING:
                    return False
                extend(item)  # type: ignore[arg-type]
            elif kind is float:
                if not math.isfinite(item):  # type: ignore[arg-type]
                    return False
            elif item is None or kind is bool:
                continue
            else:
                return False
        level = nested
    return True


def check_json(value: object, path: str = "$") -> None:
    """Raise :class:`PayloadNotJSON` if ``value`` is not plain JSON data.

    Tuples, sets, bytes, datetimes, enums and other subclasses, NaN, strings
    with lone surrogates and non-string dict keys are refused, so that what a
    worker receives is exactly what was dispatched. Data beyond the limits of
    :mod:`jobs_core.limits` (nesting deeper than
    :data:`~jobs_core.limits.MAX_NESTING`, integers beyond
    :data:`~jobs_core.limits.MAX_INT_BITS` bits) raises
    :class:`PayloadOutOfRange`.
    """
    if _is_plain(value):
        return
    stack: list[tuple[object, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or type(item) is bool:
            continue
        if type(item) is int:
            if abs(item).bit_length() > MAX_INT_BITS:
                raise PayloadOutOfRange(where, f"is an integer of more than {MAX_INT_BITS} bits")
            continue
        if type(item) is str:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise PayloadNotJSON(where, "str with a lone surrogate") from None
            continue
        if type(item) is float:
            if not math.isfinite(item):
                raise PayloadNotJSON(where, f"float ({item!r})")
            continue
        if type(item) in (list, dict) and depth > MAX_NESTING:
            shown = where if len(where) <= 60 else f"{where[:60]}..."
            raise PayloadOutOfRange(shown, f"nests containers more than {MAX_NESTING} deep")
        if type(item) is list:
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]", depth + 1))
            continue
        if type(item) is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    raise PayloadNotJSON(f"{where} key {key!r}", type(key).__name__)
                stack.append((key, f"{where} key {key[:40]!r}", depth + 1))
                stack.append((sub, f"{where}.{key}", depth + 1))
            continue
        raise PayloadNotJSON(where, type(item).__name__)


def check_each(values: Iterable[object]) -> None:
    """:func:`check_json` for each of ``values`` (the payloads of a bulk dispatch).

    One call per value for a plain one (the fast check); :func:`check_json`
    only for a value that fails it, to name the problem.
    """
    for value in values:
        if not _is_plain(value):
            check_json(value)


def dump_bytes(value: JSONValue, *, checked: bool = False) -> bytes:
    """Encode plain JSON data compactly as UTF-8 bytes.

    Raises :class:`PayloadNotJSON` naming the path and type of the first
    value JSON cannot hold. With ``checked=True`` the caller vouches that the
    parts a user supplied were checked with :func:`check_json` already.
    """
    if not checked and not _is_plain(value):
        check_json(value)
    if _orjson is not None:
        try:
            encoded: bytes = _orjson.dumps(value)
            return encoded
        except TypeError:
            pass  # an integer beyond 64 bits, or a type the caller vouched for wrongly
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        check_json(value)
        raise SerializationError(f"cannot encode as JSON: {exc}") from exc


def dumps(value: JSONValue) -> str:
    """Encode plain JSON data compactly as text (see :func:`dump_bytes`)."""
    return dump_bytes(value).decode("utf-8")


def loads(text: str | bytes) -> JSONValue:
    """Decode JSON text, raising :class:`MalformedMessage` on bad input.

    ``NaN`` and ``Infinity`` literals are refused, and so is data nested too
    deeply for the decoder.
    """
    if _orjson is not None:
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        shape = raw.translate(_DIGITS_TO_ZERO)
        if _LONG_DIGITS not in shape and _LONG_NEGATIVE not in shape:
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError as exc:
                raise MalformedMessage(f"not valid JSON: {exc}") from exc
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        return _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"not valid JSON: {exc}") from exc
    except RecursionError:
        raise MalformedMessage("not valid JSON: nested too deeply to decode") from None
