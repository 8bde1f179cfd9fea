"""Lossless conversions between guest values and database columns."""

from collections.abc import Iterable, Sequence

U64_SIGN = 1 << 63
U64_RANGE = 1 << 64


def u64_to_db(value: int) -> int:
    """Store an unsigned 64-bit value in a signed BIGINT column."""
    return value - U64_RANGE if value >= U64_SIGN else value


def u64_from_db(value: int) -> int:
    """Read back a value stored by :func:`u64_to_db`."""
    return value + U64_RANGE if value < 0 else value


def join_strings(items: Iterable[bytes]) -> bytes:
    """Pack a list of kernel strings into one NUL-separated column."""
    return b"\0".join(items)


def split_strings(packed: bytes | None) -> list[bytes]:
    """Unpack a column written by :func:`join_strings`."""
    if packed is None:
        return []
    return packed.split(b"\0")


def pack_optional_list(items: Sequence[bytes]) -> bytes | None:
    """Pack a list, keeping "absent" apart from a list of one empty string."""
    return join_strings(items) if items else None
