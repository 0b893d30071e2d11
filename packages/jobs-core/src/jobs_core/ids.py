"""Message ids: 32 hex characters, time-ordered (the UUIDv7 layout)."""

from __future__ import annotations

import os
import time

#: Characters in a message id made by :func:`new_id` or :func:`new_ids`.
ID_LENGTH = 32


def new_id() -> str:
    """A new message id: 32 hex characters, time-ordered (UUIDv7 layout)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    return f"{millis & 0xFFFFFFFFFFFF:012x}7{rand_a:03x}{(0b10 << 62) | rand_b:016x}"


#: Byte maps that set the version nibble (7) and the variant bits (10) of an id.
_VERSION_BITS = bytes((i & 0x0F) | 0x70 for i in range(256))
_VARIANT_BITS = bytes((i & 0x3F) | 0x80 for i in range(256))


def new_ids(count: int) -> list[str]:
    """``count`` new message ids at once (bulk dispatch): the layout of :func:`new_id`.

    They share the current millisecond; 74 random bits each keep them unique.
    The ids are laid out as one buffer of 16 bytes each, whose fixed bytes are
    set a column at a time (extended slices), then hex-encoded in one call.
    """
    if count <= 0:
        return []
    stamp = ((time.time_ns() // 1_000_000) & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    raw = bytearray(os.urandom(16 * count))
    for column in range(6):
        raw[column::16] = stamp[column : column + 1] * count
    raw[6::16] = raw[6::16].translate(_VERSION_BITS)
    raw[8::16] = raw[8::16].translate(_VARIANT_BITS)
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]
