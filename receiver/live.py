"""The live feed: ingest and detection publish, stream clients subscribe.

Each subscriber has a bounded buffer. A subscriber that falls behind loses
the oldest messages, never grows the server's memory, and is told how many
it missed.
"""

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One item of the live feed."""

    id: int
    kind: str
    vm: str
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """One subscriber's bounded buffer and its count of missed messages."""

    accepts: Callable[[LiveMessage], bool]
    capacity: int = DEFAULT_SUBSCRIBER_BUFFER
    missed: int = 0
    _buffer: deque[LiveMessage] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: LiveMessage) -> None:
        """Buffer ``message``, dropping the oldest one when full."""
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self.missed += 1
        self._buffer.append(message)
        self._ready.set()

    async def next_batch(self, timeout_s: float) -> tuple[list[LiveMessage], int]:
        """Wait up to ``timeout_s`` and return (messages, missed since last)."""
        if not self._buffer:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout_s)
        messages = list(self._buffer)
        self._buffer.clear()
        self._ready.clear()
        missed, self.missed = self.missed, 0
        return messages, missed


class LiveHub:
    """Fans published messages out to subscribers that accept them."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.published = 0

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscriptions)

    def publish(self, kind: str, vm: str, data: dict[str, Any]) -> None:
        """Send a message to every subscriber that accepts it."""
        if not self._subscriptions:
            return
        message = LiveMessage(next(self._ids), kind, vm, data)
        self.published += 1
        for subscription in self._subscriptions:
            if subscription.accepts(message):
                subscription.offer(message)

    def subscribe(
        self,
        accepts: Callable[[LiveMessage], bool] = lambda _message: True,
        capacity: int = DEFAULT_SUBSCRIBER_BUFFER,
    ) -> Subscription:
        """Attach a subscriber; call :meth:`unsubscribe` when done."""
        subscription = Subscription(accepts, capacity)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach a subscriber."""
        self._subscriptions.discard(subscription)
