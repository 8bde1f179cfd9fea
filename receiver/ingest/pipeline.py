"""The bounded queue between guest sockets and the store, and its writer.

Sessions offer records without waiting; the writer drains them in batches,
merges them per process and writes one transaction a batch. When the store
falls behind, the queue fills and further events are dropped and counted
for their VM: reading sockets never waits on the database.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.ingest.records import EventRecord
from receiver.sessions.vm import DropCause, VmState
from receiver.store.writer import Batch, write_batch

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One accepted event waiting for the store."""

    vm: VmState
    record: EventRecord
    payload: bytes
    received_at: int


BatchListener = Callable[[Sequence[QueuedEvent]], Awaitable[None]]


class IngestQueue:
    """A bounded FIFO of accepted events; full means drop and count."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[QueuedEvent] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: QueuedEvent) -> bool:
        """Queue ``item``; return False (and count a drop) when full."""
        if len(self._items) >= self.capacity:
            item.vm.counters.drops[DropCause.HOST_QUEUE_FULL] += 1
            item.vm.warn(
                log,
                "queue-full",
                "ingest queue full (%d events), dropping",
                self.capacity,
            )
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def newest(self) -> QueuedEvent | None:
        """The item queued last, if any (for probes that follow it)."""
        return self._items[-1] if self._items else None

    def take(self, limit: int) -> list[QueuedEvent]:
        """Remove and return up to ``limit`` items from the front."""
        count = min(limit, len(self._items))
        taken = [self._items.popleft() for _ in range(count)]
        if not self._items:
            self._ready.clear()
        return taken

    async def wait(self, timeout_s: float) -> None:
        """Wait until something is queued or ``timeout_s`` passes."""
        if self._items:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)


def build_batch(items: Sequence[QueuedEvent]) -> Batch:
    """Merge queued events into the rows of one write."""
    batch = Batch()
    for item in items:
        record = item.record
        vm_id = item.vm.vm_id
        batch.add_boot(vm_id, record.boot, item.received_at)
        if record.process is not None:
            batch.add_process(record.process)
            if record.process.container_id:
                batch.note_container(vm_id, record.boot, record.process.container_id)
        if record.exec_row is not None:
            row = record.exec_row
            batch.execs[(vm_id, row["boot"], row["uuid"], row["at"])] = row
        if record.memexec_row is not None:
            batch.memexecs.append(record.memexec_row)
        if record.container_row is not None:
            batch.add_container(record.container_row)
        batch.events.append(
            (
                vm_id,
                record.boot,
                record.kind,
                record.at,
                item.received_at,
                record.uuid,
                item.payload,
            )
        )
    return batch


class Ingestor:
    """Drains the queue into the store in batches, retrying when it fails."""

    def __init__(
        self,
        engine: AsyncEngine,
        queue: IngestQueue,
        *,
        batch_max_events: int,
        batch_interval_s: float,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.batch_max_events = batch_max_events
        self.batch_interval_s = batch_interval_s
        self.listeners: list[BatchListener] = []
        self.batches_written = 0
        self.events_written = 0
        self.last_batch_s = 0.0
        self.busy = False
        self._stopping = False

    def add_listener(self, listener: BatchListener) -> None:
        """Call ``listener`` with every batch once it is stored."""
        self.listeners.append(listener)

    async def run(self) -> None:
        """Write batches until stopped, then flush what is queued."""
        while not self._stopping:
            await self.queue.wait(self.batch_interval_s)
            await self.flush_once()
        while len(self.queue):
            await self.flush_once()

    def stop(self) -> None:
        """Ask ``run`` to flush what is queued and return."""
        self._stopping = True
        self.queue._ready.set()

    async def flush_once(self) -> int:
        """Write one batch from the queue; return how many events it held."""
        items = self.queue.take(self.batch_max_events)
        if not items:
            return 0
        self.busy = True
        try:
            await self._store(items)
        finally:
            self.busy = False
        return len(items)

    async def _store(self, items: list[QueuedEvent]) -> None:
        batch = build_batch(items)
        if not await self._write_with_retry(batch):
            for item in items:
                item.vm.counters.drops[DropCause.STORE_REJECTED] += 1
            return
        self.batches_written += 1
        self.events_written += len(items)
        for listener in self.listeners:
            try:
                await listener(items)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch listener %r failed", listener)

    async def _write_with_retry(self, batch: Batch) -> bool:
        """Write ``batch``, waiting out outages; False if the store refuses it."""
        delay = RETRY_INITIAL_S
        while True:
            started = time.perf_counter()
            try:
                await write_batch(self.engine, batch)
            except (DBAPIError, OSError) as exc:
                if isinstance(exc, DBAPIError) and not _is_transient(exc):
                    log.error("database refused %d events: %s", len(batch), exc)
                    return False
                log.warning(
                    "database write of %d events failed, retrying in %.1fs: %s",
                    len(batch),
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.last_batch_s = time.perf_counter() - started
            return True


def _is_transient(exc: DBAPIError) -> bool:
    """True for errors that a later retry can cure (a database restart)."""
    return exc.connection_invalidated or isinstance(
        exc, OperationalError | InterfaceError
    )
