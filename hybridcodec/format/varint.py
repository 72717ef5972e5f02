"""Unsigned LEB128 integers (``varint`` in docs/format.md, version 4).

7 bits per byte, least significant group first, the high bit set on every byte but the
last. A reader accepts only the one minimal encoding of a value (no trailing ``0x80 ..
0x00`` group), at most :data:`MAX_VARINT_BYTES` bytes, and no value above the field's
limit, so every integer in a stream has exactly one spelling and a damaged length can
never make a reader loop or allocate beyond the limit it was checked against.
"""

from __future__ import annotations

__all__ = ["MAX_VARINT_BYTES", "MAX_VARINT", "NeedMore", "VarintError", "encode_varint",
           "decode_varint", "varint_size"]

#: The longest encoding: 10 bytes hold 64 bits.
MAX_VARINT_BYTES = 10
#: The largest value any field may have (a field's own limit is usually far lower).
MAX_VARINT = 2**64 - 1


class NeedMore(Exception):
    """The buffer ends inside a structure: ``needed`` bytes would be the least to go on."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


class VarintError(ValueError):
    """A varint that is not minimal, too long, or above its field's limit (one line)."""


def encode_varint(value: int) -> bytes:
    """The minimal LEB128 encoding of ``value`` (0 .. 2^64 - 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VARINT:
        raise ValueError(f"varint value must be an integer in 0..{MAX_VARINT}, got {value!r}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Bytes :func:`encode_varint` takes for ``value``."""
    return max(1, -(-value.bit_length() // 7))


def decode_varint(buf: bytes | bytearray | memoryview, pos: int, limit: int,
                  what: str) -> tuple[int, int]:
    """(value, position after it) of the varint at ``buf[pos:]``.

    Raises :class:`NeedMore` if ``buf`` ends inside it, :class:`VarintError` (naming
    ``what``) if it is not minimal, longer than 10 bytes, or above ``limit``.
    """
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise NeedMore(pos + 1)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if pos - start >= MAX_VARINT_BYTES:
            raise VarintError(f"{what}: varint longer than {MAX_VARINT_BYTES} bytes")
    if byte == 0 and pos - start > 1:
        raise VarintError(f"{what}: varint not minimally encoded")
    if value > limit:
        raise VarintError(f"{what} is {value}, at most {limit} allowed")
    return value, pos
