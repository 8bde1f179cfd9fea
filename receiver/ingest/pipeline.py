"""The fair, bounded queue between guest sockets and the store, and its writer.

Sessions offer records without waiting; the writer drains them in batches,
merges them per process and writes one transaction a batch. Each VM has its
own FIFO and a batch takes a fair share from every VM that has something
queued, so a flooding VM cannot delay a quiet one. Memory is bounded per VM
and in total: when the store falls behind, the queue asks the busiest VMs to
stop reading (their socket buffers and vsock credit then hold the guest)
and lets them read again once drained. Only beyond a hard cap on queued
events is anything dropped, and counted for its VM.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.ingest.journal import Journal
from receiver.ingest.records import EventRecord
from receiver.sessions.vm import DropCause, VmState
from receiver.store.delivery import Bookkeeping
from receiver.store.writer import Batch, write_batch

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0
# What a parsed record costs in memory beyond its payload, roughly.
ITEM_OVERHEAD_BYTES = 1024
DEFAULT_VM_MAX_BYTES = 16 << 20
DEFAULT_TOTAL_MAX_BYTES = 256 << 20
# A paused VM reads again once its backlog is this fraction of its bound.
RESUME_FRACTION = 0.5
SMALL_BACKLOG_FRACTION = 0.125
# Batches are sized to take about this long, so a quiet VM's event waits
# for at most the batch in flight and the next one.
TARGET_BATCH_S = 0.1
MIN_BATCH_EVENTS = 100


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One accepted event waiting for the store."""

    vm: VmState
    record: EventRecord
    payload: bytes
    received_at: int
    # Its journal record (0 without a journal) and v2 sequence (0 in v1).
    lsn: int = 0
    seq: int = 0
    boot_seq: int = 0

    @property
    def cost(self) -> int:
        """Bytes of memory this item is counted for."""
        return len(self.payload) + ITEM_OVERHEAD_BYTES


BatchListener = Callable[[Sequence[QueuedEvent]], Awaitable[None]]


@dataclass(slots=True)
class _VmQueue:
    vm: VmState
    items: deque[QueuedEvent] = field(default_factory=deque)
    bytes: int = 0
    paused: bool = False


class IngestQueue:
    """Per-VM FIFOs drained fairly, bounded in bytes per VM and in total."""

    def __init__(
        self,
        capacity: int,
        *,
        vm_max_bytes: int = DEFAULT_VM_MAX_BYTES,
        total_max_bytes: int = DEFAULT_TOTAL_MAX_BYTES,
    ) -> None:
        self.capacity = capacity
        self.vm_max_bytes = vm_max_bytes
        self.total_max_bytes = total_max_bytes
        self.total_bytes = 0
        self.pauses = 0
        self._count = 0
        self._queues: dict[int, _VmQueue] = {}
        self._newest: QueuedEvent | None = None
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._count

    def vm_bytes(self, vm_id: int) -> int:
        """Bytes queued for one VM."""
        queue = self._queues.get(vm_id)
        return queue.bytes if queue is not None else 0

    def has_room(self, vm: VmState) -> bool:
        """False (and a drop counted) once the hard cap on events is reached."""
        if self._count < self.capacity:
            return True
        vm.counters.drops[DropCause.HOST_QUEUE_FULL] += 1
        vm.warn(
            log, "queue-full", "ingest queue full (%d events), dropping", self.capacity
        )
        return False

    def offer(self, item: QueuedEvent) -> bool:
        """Queue ``item``; return False (and count a drop) at the hard cap."""
        if not self.has_room(item.vm):
            return False
        self.push(item)
        return True

    def push(self, item: QueuedEvent) -> None:
        """Queue ``item`` (admitted by :meth:`has_room`); apply backpressure."""
        queue = self._queues.get(item.vm.vm_id)
        if queue is None:
            queue = self._queues[item.vm.vm_id] = _VmQueue(item.vm)
        queue.items.append(item)
        queue.bytes += item.cost
        self.total_bytes += item.cost
        self._count += 1
        self._newest = item
        self._ready.set()
        if not queue.paused and queue.bytes > self.vm_max_bytes:
            self._pause(queue)
        while self.total_bytes > self.total_max_bytes and self._pause_busiest():
            pass

    def newest(self) -> QueuedEvent | None:
        """The item queued last, if any (for probes that follow it)."""
        return self._newest if self._count else None

    def _pause_busiest(self) -> bool:
        # A VM with a small backlog is not what fills memory: never pause it.
        floor = self.vm_max_bytes * SMALL_BACKLOG_FRACTION
        running = [q for q in self._queues.values() if not q.paused and q.bytes > floor]
        if not running:
            return False
        self._pause(max(running, key=lambda q: q.bytes))
        return True

    def _pause(self, queue: _VmQueue) -> None:
        queue.paused = True
        self.pauses += 1
        queue.vm.pause_reading()

    def _resume_drained(self) -> None:
        if self.total_bytes > self.total_max_bytes * RESUME_FRACTION * 1.5:
            return
        for queue in self._queues.values():
            if queue.paused and queue.bytes <= self.vm_max_bytes * RESUME_FRACTION:
                queue.paused = False
                queue.vm.resume_reading()

    def take(self, limit: int) -> list[QueuedEvent]:
        """Remove up to ``limit`` items, a fair share from every VM."""
        taken: list[QueuedEvent] = []
        while len(taken) < limit and self._count:
            busy = [q for q in self._queues.values() if q.items]
            share = max(1, (limit - len(taken)) // len(busy))
            for queue in busy:
                for _ in range(min(share, len(queue.items), limit - len(taken))):
                    item = queue.items.popleft()
                    queue.bytes -= item.cost
                    self.total_bytes -= item.cost
                    self._count -= 1
                    taken.append(item)
        for vm_id in [
            k for k, q in self._queues.items() if not q.items and not q.paused
        ]:
            del self._queues[vm_id]
        self._resume_drained()
        if not self._count:
            self._ready.clear()
        return taken

    def busy_vms(self) -> int:
        """How many VMs have events queued."""
        return sum(1 for q in self._queues.values() if q.items)

    def oldest_lsn(self) -> int | None:
        """The lowest journal LSN still queued, if any."""
        heads = [q.items[0].lsn for q in self._queues.values() if q.items]
        return min(heads) if heads else None

    async def wait(self, timeout_s: float) -> None:
        """Wait until something is queued or ``timeout_s`` passes."""
        if self._count:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)


@dataclass(frozen=True, slots=True)
class PendingGap:
    """A gap accounted for by a session, journaled, waiting for the store."""

    lsn: int
    row: dict[str, Any]


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
        journal: Journal | None = None,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.journal = journal
        self.gaps: list[PendingGap] = []
        self.batch_max_events = batch_max_events
        self.batch_interval_s = batch_interval_s
        self.listeners: list[BatchListener] = []
        self.evaluators: list[BatchListener] = []
        self.batches_written = 0
        self.events_written = 0
        self.last_batch_s = 0.0
        self._writing = False
        self._stopping = False
        self._store_rate = 0.0
        # The evaluation of the last stored batch, running while the next
        # one is written, and the lowest journal LSN it holds back.
        self._evaluating: asyncio.Task[None] | None = None
        self._evaluating_floor: int | None = None
        self._writing_floor: int | None = None

    @property
    def busy(self) -> bool:
        """True while a batch is being written or evaluated."""
        evaluating = self._evaluating is not None and not self._evaluating.done()
        return self._writing or evaluating

    def add_listener(self, listener: BatchListener) -> None:
        """Call ``listener`` with every batch as soon as it is stored."""
        self.listeners.append(listener)

    def add_evaluator(self, evaluator: BatchListener) -> None:
        """Call ``evaluator`` with every stored batch, in order, while the
        next batch is written (detection: its work overlaps the database's).
        A batch's records count as processed once every evaluator saw them."""
        self.evaluators.append(evaluator)

    async def run(self) -> None:
        """Write batches until stopped, then flush what is queued."""
        while not self._stopping:
            await self.queue.wait(self.batch_interval_s)
            await self.flush_once()
        await self.run_until_idle()

    async def run_until_idle(self) -> None:
        """Write and evaluate everything queued now, then return."""
        while len(self.queue) or self.gaps:
            await self.flush_once()
        await self._finish_evaluation()

    def stop(self) -> None:
        """Ask ``run`` to flush what is queued and return."""
        self._stopping = True
        self.queue._ready.set()

    async def flush_once(self) -> int:
        """Write one batch from the queue; return how many events it held."""
        items = self.queue.take(self.batch_limit())
        if not items and not self.gaps:
            return 0
        self._writing = True
        try:
            await self._store(items)
        finally:
            self._writing = False
        return len(items)

    def batch_limit(self) -> int:
        """Events for the next batch.

        With one VM queued, full batches. With several, as many as the store
        writes in ``TARGET_BATCH_S``, so a quiet VM's event is never more
        than two short batches from the store, however busy the others are.
        """
        if self._store_rate <= 0 or self.queue.busy_vms() < 2:
            return self.batch_max_events
        fitting = int(self._store_rate * TARGET_BATCH_S)
        return max(MIN_BATCH_EVENTS, min(self.batch_max_events, fitting))

    def add_gap(self, lsn: int, row: dict[str, Any]) -> None:
        """Store ``row`` in ``delivery_gaps`` with the next batch."""
        self.gaps.append(PendingGap(lsn, row))
        self.queue._ready.set()

    async def _store(self, items: list[QueuedEvent]) -> None:
        batch = build_batch(items)
        gaps, self.gaps = self.gaps, []
        # Out of the queue but not stored: the previous batch's evaluation
        # may end meanwhile, and must not release these.
        self._writing_floor = _lowest_lsn(items, gaps)
        also = self._bookkeeping(items, gaps)
        stored = await self._write_with_retry(batch, also)
        if not stored:
            for item in items:
                item.vm.counters.drops[DropCause.STORE_REJECTED] += 1
            # Mark them applied all the same, or every restart replays them.
            await self._write_with_retry(Batch(), also)
        if stored and items:
            self.batches_written += 1
            self.events_written += len(items)
            await _call(self.listeners, items)
            await self._finish_evaluation()
            if self.evaluators:
                self._evaluating_floor = _lowest_lsn(items, ())
                self._evaluating = asyncio.create_task(
                    self._evaluate(items), name="ingest-evaluation"
                )
        self._writing_floor = None
        self._after_processed()

    async def _evaluate(self, items: Sequence[QueuedEvent]) -> None:
        await _call(self.evaluators, items)
        # Only now are the records processed: stored, and seen by detection.
        self._evaluating_floor = None
        self._after_processed()

    async def _finish_evaluation(self) -> None:
        """Wait for the evaluation of the previous batch."""
        if self._evaluating is not None:
            await self._evaluating
            self._evaluating = None

    def _bookkeeping(
        self, items: Sequence[QueuedEvent], gaps: Sequence[PendingGap]
    ) -> Bookkeeping | None:
        journal = self.journal
        if journal is None:
            return None
        applied: dict[int, int] = {}
        sequences: dict[tuple[int, int], int] = {}
        for item in items:
            vm_id = item.vm.vm_id
            if item.lsn:
                applied[vm_id] = max(applied.get(vm_id, 0), item.lsn)
            if item.seq:
                key = (vm_id, item.boot_seq)
                sequences[key] = max(sequences.get(key, 0), item.seq)
        for gap in gaps:
            if gap.row.get("last_seq"):
                key = (gap.row["vm_id"], gap.row["boot"])
                sequences[key] = max(sequences.get(key, 0), gap.row["last_seq"])
        rows = [
            dict(gap.row, journal_id=journal.journal_id, lsn=gap.lsn) for gap in gaps
        ]
        return Bookkeeping(journal.journal_id, applied, sequences, rows, time.time_ns())

    def _after_processed(self) -> None:
        journal = self.journal
        if journal is None:
            return
        floor = self.queue.oldest_lsn()
        for held in (self._writing_floor, self._evaluating_floor):
            if held is not None:
                floor = held if floor is None else min(floor, held)
        if self.gaps:
            oldest_gap = min(gap.lsn for gap in self.gaps)
            floor = oldest_gap if floor is None else min(floor, oldest_gap)
        journal.release(journal.written_lsn + 1 if floor is None else floor)

    async def _write_with_retry(
        self,
        batch: Batch,
        also: Bookkeeping | None = None,
    ) -> bool:
        """Write ``batch``, waiting out outages; False if the store refuses it."""
        delay = RETRY_INITIAL_S
        while True:
            started = time.perf_counter()
            try:
                await write_batch(self.engine, batch, also)
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
            if len(batch) >= MIN_BATCH_EVENTS and self.last_batch_s > 0:
                rate = len(batch) / self.last_batch_s
                # Smoothed, so one slow batch does not halve the next.
                self._store_rate = (
                    rate
                    if not self._store_rate
                    else 0.7 * self._store_rate + 0.3 * rate
                )
            return True


def _lowest_lsn(items: Sequence[QueuedEvent], gaps: Sequence[PendingGap]) -> int | None:
    """The lowest journal LSN among ``items`` and ``gaps`` (None if none)."""
    lsns = [item.lsn for item in items if item.lsn] + [gap.lsn for gap in gaps]
    return min(lsns) if lsns else None


async def _call(
    listeners: Sequence[BatchListener], items: Sequence[QueuedEvent]
) -> None:
    """Call each listener with ``items``; one failing does not stop the rest."""
    for listener in listeners:
        try:
            await listener(items)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch listener %r failed", listener)


def _is_transient(exc: DBAPIError) -> bool:
    """True for errors that a later retry can cure (a database restart)."""
    return exc.connection_invalidated or isinstance(
        exc, OperationalError | InterfaceError
    )
