"""A bounded queue of encoded frames between the kernel side and the sender.

Putting never blocks: a full queue or an absent host drops the frame and
counts the cause, so the kernel side never waits for the network.
"""

import asyncio
from collections import deque

from guest_lsm.stats import Counters, DropCause


class Outbox:
    """Frames waiting for the host, at most ``capacity`` of them."""

    def __init__(self, capacity: int, counters: Counters) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._frames: deque[bytes] = deque()
        self._counters = counters
        self._ready = asyncio.Event()
        self.accepting = False

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> bool:
        """Queue a frame; return False if it was dropped."""
        if not self.accepting:
            self._counters.drop(DropCause.DISCONNECTED)
            return False
        if len(self._frames) >= self.capacity:
            self._counters.drop(DropCause.QUEUE_FULL)
            return False
        self._frames.append(frame)
        depth = len(self._frames)
        if depth > self._counters.queue_high_water:
            self._counters.queue_high_water = depth
        self._ready.set()
        return True

    def take_all(self) -> list[bytes]:
        """Remove and return every queued frame."""
        frames = list(self._frames)
        self._frames.clear()
        self._ready.clear()
        return frames

    async def wait(self) -> None:
        """Wait until at least one frame is queued."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()

    def clear(self, cause: DropCause | None = None) -> int:
        """Drop everything queued, counting it under ``cause`` if given."""
        dropped = len(self._frames)
        self._frames.clear()
        self._ready.clear()
        if cause is not None and dropped:
            self._counters.drop(cause, dropped)
        return dropped
