"""The exporter: this host's events, delivery gaps and findings, read from
the ingest journal and published to a stream engine, at least once.

Each sink has its own reader of the journal. The exporter publishes a window
of durable records, waits for the engine's acknowledgements and only then
commits the reader's position, so the journal keeps those records until
they are published. A crash in between republishes the window with the same
message ids, which the engine (JetStream) or the consumer (Kafka)
deduplicates. Export does not wait for the database: events are published
once they are durable in the journal, findings once detection journaled
them.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from receiver.export.errors import SinkUnavailable
from receiver.export.source import ExportItem, ExportSource, VmNames
from receiver.ingest.journal import Journal, JournalReader

log = logging.getLogger(__name__)

EXPORT_WINDOW = 500
POLL_INTERVAL_S = 0.1
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0


class Sink(Protocol):
    """Where exported items go (NATS JetStream, Kafka)."""

    name: str
    # Bodies cut to fit the engine's largest message (see encode_body).
    oversized: int

    async def connect(self) -> None:
        """Open the connection; raise SinkUnavailable if it cannot."""

    async def publish(self, items: Sequence[ExportItem]) -> None:
        """Publish ``items``, returning once the engine stored all of them."""

    async def close(self) -> None:
        """Flush and close."""


class Exporter:
    """Publishes this host's journal to one sink."""

    def __init__(
        self, journal: Journal, host: str, sink: Sink, vm_name: VmNames
    ) -> None:
        self.journal = journal
        self.host = host
        self.sink = sink
        self.vm_name = vm_name
        self.published: Counter[str] = Counter()
        self.failures = 0
        self._source: ExportSource | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def reader_name(self) -> str:
        """The journal reader this exporter owns."""
        return f"export-{self.sink.name}"

    @property
    def reader(self) -> JournalReader:
        """Its reader (the journal must be open)."""
        return self.journal.readers[self.reader_name]

    @property
    def unusable(self) -> int:
        """Journaled events that could not be turned into a message."""
        return self._source.unusable if self._source is not None else 0

    async def notify(self, _items: Sequence[object]) -> None:
        """Ingest listener: a batch was processed (findings may be new)."""
        self.wake()

    def wake(self) -> None:
        """Look for new records now."""
        self._wake.set()

    async def run(self) -> None:
        """Export until stopped, then export what is left once more."""
        self._source = ExportSource(self.journal.journal_id, self.host, self.vm_name)
        delay = RETRY_INITIAL_S
        connected = False
        while True:
            try:
                if not connected:
                    await self.sink.connect()
                    connected = True
                    log.info("exporting to %s", self.sink.name)
                await self.export_pending()
                delay = RETRY_INITIAL_S
            except asyncio.CancelledError:
                raise
            except (SinkUnavailable, OSError) as exc:
                self.failures += 1
                log.warning("export to %s stalled, retrying: %s", self.sink.name, exc)
                if self._stopping:
                    return
                await self._sleep(delay)
                if self._stopping:
                    # The sink is down: what is left stays in the journal
                    # for the next run.
                    return
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self._stopping:
                return
            await self._sleep(POLL_INTERVAL_S)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def stop(self) -> None:
        """Ask :meth:`run` to finish after one last pass."""
        self._stopping = True
        self._wake.set()

    async def export_pending(self) -> int:
        """Publish every journaled record not yet published; return how many."""
        source = self._source
        assert source is not None, "run() makes the source"
        reader = self.reader
        total = 0
        while reader.has_unread():
            if reader.position > self.journal.durable_lsn:
                # Publish only what a crash cannot take back.
                await self.journal.sync()
            records = reader.read(EXPORT_WINDOW)
            if not records:
                break
            items = [item for r in records if (item := source.item(r)) is not None]
            if items:
                await self.sink.publish(items)
            reader.commit(records[-1].lsn + 1)
            self.published.update(item.stream for item in items)
            total += len(items)
        return total
