"""Lossless delivery on the host: journal first, then the queue, then acks.

One :class:`Delivery` serves every session. It appends accepted events and
gaps to the journal, queues them for the store, keeps the per-(vm, boot)
sequence marks that drop v2 duplicates, and, after each journal sync, lets
v2 sessions acknowledge what became durable. On start it replays the journal
left by the previous run.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from csm_wire.messages import usable_event
from receiver.ingest.journal import Journal, JournalFull, JournalRecord, RecordKind
from receiver.ingest.pipeline import Ingestor, IngestQueue, QueuedEvent
from receiver.ingest.records import EventRecord, RecordError, record_event
from receiver.sessions.vm import VmState

if TYPE_CHECKING:
    from receiver.sessions.session import GuestSession

log = logging.getLogger(__name__)

DEFAULT_SYNC_INTERVAL_S = 0.005

VmLookup = Callable[[int], Awaitable[VmState]]


@dataclass(slots=True)
class BootMarks:
    """How far one boot's v2 sequence got on this host."""

    # Highest sequence accepted (journaled, or explained by a gap).
    accepted: int = 0
    # The journal record that accepted it; acked once that is synced.
    accepted_lsn: int = 0
    # Highest sequence whose record is durable: what may be acknowledged.
    durable: int = 0


class Delivery:
    """The journal, the queue and the sequence marks, shared by sessions."""

    def __init__(
        self,
        journal: Journal,
        queue: IngestQueue,
        ingestor: Ingestor,
        *,
        sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
    ) -> None:
        self.journal = journal
        self.queue = queue
        self.ingestor = ingestor
        self.sync_interval_s = sync_interval_s
        self.marks: dict[tuple[int, int], BootMarks] = {}
        self.v2_sessions: set[GuestSession] = set()
        self.replayed = 0
        # Stored by the last run, perhaps not yet seen by detection.
        self.unevaluated: list[QueuedEvent] = []
        self._wake = asyncio.Event()
        self._sync_wanted = False
        self._stopping = False

    def marks_for(self, vm_id: int, boot: int) -> BootMarks:
        """The sequence marks of one boot of one VM."""
        marks = self.marks.get((vm_id, boot))
        if marks is None:
            marks = self.marks[(vm_id, boot)] = BootMarks()
        return marks

    def wake(self) -> None:
        """Ask for a journal sync soon (something waits for an ack)."""
        self._sync_wanted = True
        self._wake.set()

    def accept_event(
        self,
        vm: VmState,
        record: EventRecord,
        payload: bytes,
        received_at: int,
        *,
        seq: int = 0,
        boot: int = 0,
    ) -> int | None:
        """Journal and queue one event; its LSN, or None if the host is full."""
        if not self.queue.has_room(vm):
            return None
        try:
            lsn = self.journal.append_event(
                vm.vm_id, boot or record.boot, seq, received_at, payload
            )
        except JournalFull as exc:
            vm.warn(log, "journal-full", "event refused: %s", exc)
            return None
        self.queue.push(
            QueuedEvent(vm, record, payload, received_at, lsn, seq, boot if seq else 0)
        )
        if seq:
            self._sync_wanted = True
        self._wake.set()
        return lsn

    def record_gap(
        self,
        vm: VmState,
        boot: int,
        cause: str,
        *,
        first_seq: int | None = None,
        last_seq: int | None = None,
        count: int | None = None,
        started_at: int | None = None,
        ended_at: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        """Journal a gap for the store; its LSN, or None if the journal is full."""
        row: dict[str, Any] = {
            "vm_id": vm.vm_id,
            "boot": boot,
            "cause": cause,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "count": count,
            "started_at": started_at,
            "ended_at": ended_at,
            "detected_at": time.time_ns(),
            "details": None if details is None else _json(details),
        }
        try:
            lsn = self.journal.append_gap(vm.vm_id, row)
        except JournalFull as exc:
            vm.warn(log, "journal-full", "gap not recorded: %s", exc)
            return None
        self.ingestor.add_gap(lsn, row)
        vm.delivery.note_gap(cause, count)
        log.info(
            "vm %s: gap in boot %08x: %s, %s events",
            vm.name,
            boot,
            cause,
            "unknown" if count is None else count,
        )
        return lsn

    async def run(self) -> None:
        """Shortly after records are appended, write them out; sync the
        journal and send the acks when a v2 guest waits for one."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.sync_interval_s)
            if self._sync_wanted:
                self._sync_wanted = False
                await self.sync_and_ack()
            else:
                self.journal.flush()

    async def sync_and_ack(self) -> None:
        """Sync the journal now and acknowledge what became durable."""
        durable_lsn = await self.journal.sync()
        for marks in self.marks.values():
            if marks.durable < marks.accepted and marks.accepted_lsn <= durable_lsn:
                marks.durable = marks.accepted
        for session in list(self.v2_sessions):
            session.on_durable(durable_lsn)

    def stop(self) -> None:
        """End :meth:`run`."""
        self._stopping = True
        self._wake.set()

    async def replay(
        self,
        records: Iterable[JournalRecord],
        applied: dict[int, int],
        stored_seqs: dict[tuple[int, int], int],
        lookup: VmLookup,
    ) -> int:
        """Queue what the previous run journaled but did not store, and keep
        in ``unevaluated`` what it stored but detection did not see;
        ``records`` are those :meth:`Journal.open` returned."""
        for key, seq in stored_seqs.items():
            marks = self.marks_for(*key)
            marks.accepted = marks.durable = max(marks.accepted, seq)
        replayed = 0
        self.unevaluated = []
        for record in records:
            if record.kind is RecordKind.FINDING:
                # Stored by detection; only the journal's readers want it.
                continue
            if record.kind is RecordKind.GAP:
                assert record.gap is not None
                self.ingestor.add_gap(record.lsn, record.gap)
                self._advance(record.vm_id, record.boot, record.gap.get("last_seq"))
                continue
            if record.seq:
                self._advance(record.vm_id, record.boot, record.seq)
            # Every record here is unprocessed (Journal.open leaves out the
            # rest): a stored one still waits for detection.
            stored = record.lsn <= applied.get(record.vm_id, 0)
            queued = _requeue(await lookup(record.vm_id), record)
            if queued is None:
                continue
            if stored:
                self.unevaluated.append(queued)
            else:
                self.queue.push(queued)
                replayed += 1
        self.replayed = replayed
        if replayed:
            log.info("journal: %d events replayed into the store", replayed)
        return replayed

    def _advance(self, vm_id: int, boot: int, seq: int | None) -> None:
        if not seq:
            return
        marks = self.marks_for(vm_id, boot)
        marks.accepted = marks.durable = max(marks.accepted, seq)


def _requeue(vm: VmState, record: JournalRecord) -> QueuedEvent | None:
    event = usable_event(record.payload)
    if event is None:
        return None
    try:
        parsed = record_event(vm.vm_id, event, record.boot)
    except RecordError:
        return None
    return QueuedEvent(
        vm,
        parsed,
        record.payload,
        record.received_at,
        record.lsn,
        record.seq,
        record.boot if record.seq else 0,
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))
