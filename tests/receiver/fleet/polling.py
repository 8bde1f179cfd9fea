"""Waiting on what receivers report (through the database or their
exporters), and the runs the export tests share."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from receiver.settings import Settings
from tests.conftest import RunningReceiver, read_vector, start_receiver, stop_receiver
from tests.receiver.helpers import stream_and_store, wait_for

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


async def export_web_pod_in_two_runs(settings: Settings) -> None:
    """Run a receiver twice: the web pod into vm-a, then into vm-b, each
    run exported in full before it stops."""
    web_pod = read_vector("web-pod.bin")
    for vm in ("vm-a", "vm-b"):
        running = await start_receiver(settings)
        try:
            await stream_and_store(running, vm, web_pod)
            await exported_all(running)
        finally:
            await stop_receiver(running)
