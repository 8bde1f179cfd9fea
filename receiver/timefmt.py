"""RFC 3339 times with nanoseconds, to and from the guest's integer ns."""

import functools
import re
from datetime import UTC, datetime

NS_PER_S = 1_000_000_000
_RFC3339 = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)


# Big responses show thousands of times from the same few seconds.
@functools.lru_cache(maxsize=4096)
def _format_second(seconds: int) -> str | None:
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}."


def format_ns(ns: int | None) -> str | None:
    """Render integer nanoseconds since the epoch as RFC 3339 UTC."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, NS_PER_S)
    second = _format_second(seconds)
    if second is None:
        return None
    return f"{second}{fraction:09d}Z"


def parse_time(text: str) -> int:
    """Parse RFC 3339 or integer nanoseconds; raise ValueError otherwise."""
    if text.isdigit():
        return int(text)
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError("expected RFC 3339 (2026-01-02T03:04:05Z) or nanoseconds")
    tz = match["tz"].upper()
    base = datetime.fromisoformat(match["base"] + ("+00:00" if tz == "Z" else tz))
    fraction = int((match["frac"] or "0").ljust(9, "0"))
    return int(base.timestamp()) * NS_PER_S + fraction
