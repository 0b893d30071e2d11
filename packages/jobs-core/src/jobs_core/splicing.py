"""Encoding many messages that share every field but their id and payload.

The envelope of a bulk dispatch is encoded once with two placeholders, cut
around them, and each message's encoding is spliced together from the cut
pieces, its id and its encoded payload. Used by
:meth:`Message.build_many <jobs_core.message.Message.build_many>` and
:class:`~jobs_core.message.MessageBatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs_core import serializer
from jobs_core.ids import new_ids

if TYPE_CHECKING:
    from jobs_core.message import Message

__all__ = ["ENCODED_KEY", "build_spliced", "dump_all", "envelope_parts", "splice"]

#: Where a message built with a known encoding keeps it (outside the dataclass
#: fields: ``replace`` and ``__init__`` build messages without it).
ENCODED_KEY = "_encoded"

# Placeholders spliced out of a shared envelope by Message.build_many; the
# control characters keep them apart from anything a user would write.
_ID_MARK = "\x01jobs-id\x01"
_PAYLOAD_MARK = "\x01jobs-payload\x01"


def envelope_parts(cls: type[Message], common: dict[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    """The encoded envelope of ``common`` cut around its id and payload, or ``None``
    when the cut would be ambiguous (a field that contains a placeholder).
    """
    template = cls.build({**common, "id": _ID_MARK, "payload": _PAYLOAD_MARK})
    shell = serializer.dump_bytes(template.envelope(), checked=True)
    id_mark, payload_mark = serializer.dump_bytes(_ID_MARK), serializer.dump_bytes(_PAYLOAD_MARK)
    at_id, at_payload = shell.find(id_mark), shell.find(payload_mark)
    if shell.count(id_mark) != 1 or shell.count(payload_mark) != 1 or at_payload < at_id:
        return None
    head = shell[: at_id + 1]  # up to the id's opening quote
    middle = shell[at_id + len(id_mark) - 1 : at_payload]  # from its closing quote
    tail = shell[at_payload + len(payload_mark) :]
    return head, middle, tail


def build_spliced(
    cls: type[Message],
    common: dict[str, Any],
    parts: tuple[bytes, bytes, bytes] | None,
    payloads: Sequence[Any],
) -> list[Message]:
    """Messages of class ``cls`` with ``common``'s fields, a new id and one of ``payloads`` each,
    their encodings spliced from ``parts`` (built one by one when ``parts`` is ``None``).
    """
    ids = new_ids(len(payloads))
    if parts is None:
        return [cls.build({**common, "id": i, "payload": p}) for i, p in zip(ids, payloads, strict=True)]
    new = object.__new__
    messages = []
    for ident, payload, body in zip(ids, payloads, splice(parts, ids, dump_all(payloads)), strict=True):
        message = new(cls)
        fields = message.__dict__
        fields.update(common)
        fields["id"] = ident
        fields["payload"] = payload
        fields[ENCODED_KEY] = body
        messages.append(message)
    return messages


def splice(parts: tuple[bytes, bytes, bytes], ids: Sequence[str], payloads: Sequence[bytes]) -> list[bytes]:
    """Each message's encoding: the shared envelope with its id and encoded payload put in."""
    head, middle, tail = parts
    join = b"".join
    return [
        join((head, ident.encode(), middle, payload, tail))
        for ident, payload in zip(ids, payloads, strict=True)
    ]


def dump_all(payloads: Sequence[Any]) -> list[bytes]:
    """The encodings of payloads already checked with :func:`~jobs_core.serializer.check_json`."""
    fast = serializer.FAST_DUMPS
    if fast is not None:
        try:
            return [fast(payload) for payload in payloads]
        except TypeError:
            pass  # an integer beyond 64 bits: dump_bytes encodes it
    dump = serializer.dump_bytes
    return [dump(payload, checked=True) for payload in payloads]
