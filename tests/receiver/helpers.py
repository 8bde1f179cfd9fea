"""Helpers for receiver tests: streaming to a VM and waiting for the store."""

import asyncio
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

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


class ReceiverProcess:
    """``csm-receiver serve`` in a subprocess, its log drained in the background."""

    STARTUP_TIMEOUT_S = 30

    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "receiver.cli",
                "serve",
                "--api",
                "127.0.0.1:0",
                *args,
            ],
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.port = self._wait_for_api()
        # Keep reading, or a chatty receiver blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        """The receiver's process id."""
        return self.process.pid

    def _wait_for_api(self) -> int:
        assert self.process.stderr is not None
        deadline = time.monotonic() + self.STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            self.log.append(line)
            match = re.search(r"API and dashboard on http://127\.0\.0\.1:(\d+)/", line)
            if match:
                return int(match[1])
            if not line and self.process.poll() is not None:
                break
        self.process.kill()
        self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()
        raise AssertionError("the receiver did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Signal the receiver and wait for it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout_s)
        self._drain.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code

    @property
    def stderr(self) -> str:
        """Everything the receiver logged so far."""
        return "".join(self.log)
