"""Helpers for receiver tests: streaming to a VM and waiting for the store."""

import asyncio
import random
from collections.abc import Callable

from receiver.sessions.vm import VmState
from tests.conftest import GuestConnection, RunningReceiver


def random_chunks(size: int, seed: int, largest: int = 7) -> list[int]:
    """Chunk sizes of 1 to ``largest`` bytes covering ``size`` bytes."""
    rng = random.Random(seed)
    chunks: list[int] = []
    while sum(chunks) < size:
        chunks.append(rng.randint(1, largest))
    return chunks


async def wait_for(
    predicate: Callable[[], bool], what: str, timeout_s: float = 10
) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


def vm_state(running: RunningReceiver, vm: str) -> VmState:
    """The live state of ``vm``."""
    state = running.service.registry.get(vm)
    assert state is not None
    return state


async def stream_and_store(
    running: RunningReceiver, vm: str, data: bytes, chunks: list[int] | None = None
) -> None:
    """Send a whole guest stream, close it, and wait until it is stored."""
    state = vm_state(running, vm)
    expected_bytes = state.counters.bytes + len(data)
    guest = await GuestConnection.open(running.sockets[vm])
    await guest.send(data, chunks)
    await guest.close()
    await wait_for(lambda: state.counters.bytes >= expected_bytes, "bytes received")
    await wait_for(lambda: not state.sessions, f"{vm} disconnected")
    await running.settle()


async def all_items(
    running: RunningReceiver, path: str, **params: object
) -> list[dict]:
    """Follow ``next`` cursors and return every item of a list endpoint."""
    items: list[dict] = []
    cursor = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        page = await running.get(path, **query)
        items.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return items
