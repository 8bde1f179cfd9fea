"""Query parameters and opaque cursors, each checked with a clear 400."""

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from receiver.api.problems import bad_parameter
from receiver.timefmt import parse_time

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
U64_MAX = 2**64 - 1
# What a signed BIGINT column holds: times in ns and cursor keys.
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
# ASCII only: str.isdigit() also accepts digits that int() refuses.
DIGITS = re.compile(r"^[0-9]{1,20}$")


def parse_limit(query: Mapping[str, str]) -> int:
    """``limit``: 1 to 1000, 100 when absent."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_parameter("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_uint(
    query: Mapping[str, str], name: str, maximum: int = U64_MAX
) -> int | None:
    """An optional unsigned integer parameter."""
    raw = query.get(name)
    if raw is None:
        return None
    if not DIGITS.fullmatch(raw) or int(raw) > maximum:
        raise bad_parameter(name, f"an integer from 0 to {maximum}")
    return int(raw)


def parse_boot(query: Mapping[str, str]) -> int | None:
    """``boot``: a machine id as 8 hex digits."""
    raw = query.get("boot")
    if raw is None:
        return None
    try:
        if len(raw) != 8:
            raise ValueError(raw)
        return int(raw, 16)
    except ValueError:
        raise bad_parameter("boot", "8 hex digits") from None


def parse_bool(query: Mapping[str, str], name: str) -> bool | None:
    """An optional true/false parameter."""
    raw = query.get(name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise bad_parameter(name, "true or false")


def parse_time_param(query: Mapping[str, str], name: str) -> int | None:
    """An optional RFC 3339 time (or integer nanoseconds)."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        if not raw.isascii():
            raise ValueError("expected RFC 3339 (2026-01-02T03:04:05Z) or nanoseconds")
        value = parse_time(raw)
    except ValueError as exc:
        raise bad_parameter(name, str(exc)) from None
    if not 0 <= value <= I64_MAX:
        raise bad_parameter(name, "a time between 1970 and 2262")
    return value


def parse_uuid(raw: str, name: str = "uuid") -> bytes:
    """A process UUID as 32 hex digits."""
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        value = b""
    if len(value) != 16:
        raise bad_parameter(name, "32 hex digits")
    return value


def encode_cursor(kind: str, key: list[Any]) -> str:
    """An opaque cursor continuing after ``key`` in a list of ``kind``."""
    body = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _fits(value: Any, kind: type) -> bool:
    if not isinstance(value, kind) or isinstance(value, bool):
        return False
    return not isinstance(value, int) or I64_MIN <= value <= I64_MAX


def decode_cursor(
    query: Mapping[str, str], kind: str, types: tuple[type, ...]
) -> list[Any] | None:
    """Decode ``cursor`` made by :func:`encode_cursor`; 400 if forged."""
    raw = query.get("cursor")
    if raw is None:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_parameter("cursor", "not a cursor from this API") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != len(types) + 1
        or decoded[0] != kind
        or not all(_fits(v, t) for v, t in zip(decoded[1:], types, strict=True))
    ):
        raise bad_parameter("cursor", "not a cursor for this list")
    return decoded[1:]


async def read_json_body(request: web.Request) -> Any:
    """The request's JSON body; a 400 naming ``body`` if it is not JSON."""
    # Reading first: an oversized body is a 413 whatever its type.
    raw = await request.read()
    if request.content_type != "application/json":
        raise bad_parameter("body", "send Content-Type: application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter("body", "not valid JSON") from None
