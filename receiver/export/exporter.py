"""The exporter: stored events and findings of this host, published to a
stream engine with at-least-once delivery.

It reads what the store already holds, after a durable cursor per stream,
publishes a window, waits for the acknowledgements and only then saves the
cursor. A crash in between republishes the window with the same message ids,
which the sink deduplicates. Ingest wakes it after each stored batch
(:meth:`Exporter.notify` is an ingest listener); a poll catches findings
written by detection.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.export.errors import SinkUnavailable
from receiver.export.source import ExportItem, load_cursor, read_after, save_cursor

log = logging.getLogger(__name__)

EXPORT_WINDOW = 500
POLL_INTERVAL_S = 1.0
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
STREAMS = ("events", "findings")


class Sink(Protocol):
    """Where exported items go (NATS JetStream; Kafka would fit the same)."""

    name: str

    async def connect(self) -> None:
        """Open the connection; raise SinkUnavailable if it cannot."""

    async def publish(self, items: Sequence[ExportItem]) -> None:
        """Publish ``items``, returning once the engine stored all of them."""

    async def close(self) -> None:
        """Flush and close."""


class Exporter:
    """Publishes this host's stored events and findings to a sink."""

    def __init__(self, engine: AsyncEngine, host: str, sink: Sink) -> None:
        self.engine = engine
        self.host = host
        self.sink = sink
        self.published = dict.fromkeys(STREAMS, 0)
        self.positions = dict.fromkeys(STREAMS, 0)
        self._wake = asyncio.Event()
        self._stopping = False

    def cursor_name(self, stream: str) -> str:
        """The durable cursor of ``stream`` for this host and sink."""
        return f"{self.sink.name}:{self.host}:{stream}"

    async def notify(self, _items: Sequence[object]) -> None:
        """Ingest listener: new rows are stored."""
        self.wake()

    def wake(self) -> None:
        """Look for new rows now (detection calls this after a finding)."""
        self._wake.set()

    async def run(self) -> None:
        """Export until stopped, then export what is left once more."""
        delay = RETRY_INITIAL_S
        connected = False
        while True:
            try:
                if not connected:
                    await self.sink.connect()
                    connected = True
                    for stream in STREAMS:
                        name = self.cursor_name(stream)
                        self.positions[stream] = await load_cursor(self.engine, name)
                await self.export_pending()
                delay = RETRY_INITIAL_S
            except asyncio.CancelledError:
                raise
            except (SinkUnavailable, DBAPIError, OSError) as exc:
                log.warning("export to %s stalled, retrying: %s", self.sink.name, exc)
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            self._wake.clear()

    def stop(self) -> None:
        """Ask :meth:`run` to finish after one last pass."""
        self._stopping = True
        self._wake.set()

    async def export_pending(self) -> int:
        """Publish everything stored after the cursors; return how many."""
        total = 0
        for stream in STREAMS:
            while True:
                items = await read_after(
                    self.engine,
                    stream,
                    self.host,
                    self.positions[stream],
                    EXPORT_WINDOW,
                )
                if not items:
                    break
                await self.sink.publish(items)
                position = items[-1].position
                await save_cursor(self.engine, self.cursor_name(stream), position)
                self.positions[stream] = position
                self.published[stream] += len(items)
                total += len(items)
        return total
