"""Waiting on state that another receiver reports through the database."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tests.conftest import RunningReceiver
from tests.receiver.helpers import wait_for

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


async def exported_all(running: RunningReceiver) -> None:
    """Wait until every exporter of ``running`` published all it journaled."""
    await running.settle()
    exporters = running.service.fleet.exporters
    await wait_for(
        lambda: not any(exporter.reader.lag for exporter in exporters),
        "journal exported",
        20,
    )
