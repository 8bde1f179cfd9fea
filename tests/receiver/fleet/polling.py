"""Waiting on state that another receiver reports through the database."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    holds: Callable[[T], bool],
    timeout_s: float = 10.0,
) -> T:
    """Call ``fetch`` until ``holds`` accepts its value; fail after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await fetch()
        if holds(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"never held: {value!r}"
        await asyncio.sleep(0.02)
