"""The ingest journal: what the receiver accepted, on disk before it is acked.

Sessions append every accepted event (and every gap they account for) here,
then hand it to the ingest queue; a v2 guest is acknowledged only once the
record is synced. The database is fed from the queue; each batch stores, in
its own transaction, how far every VM's records are applied, so replaying
the journal after a crash stores each record exactly once.

Layout: ``<data-dir>/journal/`` holds an ``id`` file (this journal's name in
the database) and segment files named after their first record's LSN. A
record is ``<u32 body length, u32 crc32 of the rest, u64 lsn, u8 kind>``
followed by its body. Detection journals the findings it reports, so the
journal holds everything the exporter publishes, in one order.

A segment is deleted once every record in it is applied (stored and
evaluated by detection) and every reader (an exporter) has read past it.
How far records are applied is kept in the ``processed`` file, how far a
reader got in ``reader.<name>``; both only ever lag, which replays or
republishes a little, never skips. A torn record at the end (a crash
mid-write) ends the replay and is cut off.

Overflow policy: the journal never exceeds ``journal_max_bytes``. An append
that would raises :class:`JournalFull`; the session then refuses the event:
a v2 connection is closed unacknowledged (the guest keeps the events and
replays them on reconnect), a v1 event is dropped and counted as a
``host_overflow`` gap, since a v1 guest cannot resend. Segments kept only
for a reader that lags (its sink is down) never refuse an event: the oldest
of them are deleted first, and the reader counts what it skipped.
"""

import asyncio
import enum
import json
import logging
import os
import re
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_HEADER = struct.Struct("<IIQB")
EVENT_HEAD = struct.Struct("<IIQq")
GAP_HEAD = struct.Struct("<I")
SEGMENT_SUFFIX = ".seg"
ID_FILE = "id"
PROCESSED_FILE = "processed"
READER_PREFIX = "reader."
# What one read returns at most, so a reader catching up yields the loop.
READ_CHUNK_BYTES = 1 << 20
# Appended records are written once this many bytes wait, or at the next
# flush or sync (the delivery loop does one within milliseconds).
WRITE_BUFFER_BYTES = 256 << 10
# A record larger than this is corruption, not an event (frames are <= 1 MiB).
MAX_RECORD_BYTES = 16 << 20
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class JournalFull(Exception):
    """Appending would take the journal past its size bound."""


class RecordKind(enum.IntEnum):
    """What a journal record holds."""

    EVENT = 1
    GAP = 2
    FINDING = 3


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One record read back from the journal."""

    lsn: int
    kind: RecordKind
    vm_id: int
    boot: int = 0
    seq: int = 0
    received_at: int = 0
    payload: bytes = b""
    # The row of a GAP record, or the finding of a FINDING record.
    gap: dict[str, Any] | None = None
    # Bytes on disk, header included.
    size: int = 0


@dataclass(slots=True)
class _Segment:
    path: Path
    first_lsn: int
    last_lsn: int
    size: int


def _encode(lsn: int, kind: RecordKind, body: bytes) -> bytes:
    rest = struct.pack("<QB", lsn, kind) + body
    return struct.pack("<II", len(body), zlib.crc32(rest)) + rest


class Journal:
    """An append-only, size-bounded log of accepted records."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync: bool = True,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.journal_id = ""
        self.next_lsn = 1
        self.written_lsn = 0
        self.durable_lsn = 0
        self.size_bytes = 0
        self.overflows = 0
        self.appended = 0
        # Everything below this LSN is stored and evaluated by detection.
        self.processed_below = 1
        self.readers: dict[str, JournalReader] = {}
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        # Encoded records not yet written to the open segment.
        self._pending = bytearray()

    def __len__(self) -> int:
        """Segments on disk."""
        return len(self._segments)

    @property
    def full_fraction(self) -> float:
        """How full the journal is, from 0 to 1."""
        return self.size_bytes / self.max_bytes if self.max_bytes else 0.0

    @property
    def first_lsn(self) -> int:
        """The oldest LSN still on disk (the next one if the journal is empty)."""
        return self._segments[0].first_lsn if self._segments else self.next_lsn

    def open(self, readers: Sequence[str] = ()) -> list[JournalRecord]:
        """Open the journal and return the records the last run left
        unprocessed (not yet stored, or not yet seen by detection).

        ``readers`` are the consumers that read the journal (one per export
        sink); each resumes where it got last time. Positions of readers no
        longer configured are forgotten. Records kept only for a reader stay
        on disk and are not returned, so memory holds only what is replayed.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.journal_id = self._load_id()
        self.processed_below = _read_position(self.directory / PROCESSED_FILE, 1)
        records: list[JournalRecord] = []
        kept = 0
        for path in sorted(self.directory.glob("*" + SEGMENT_SUFFIX)):
            segment_records, size = self._read_segment(path)
            if not segment_records:
                path.unlink()
                continue
            kept += len(segment_records)
            records.extend(r for r in segment_records if r.lsn >= self.processed_below)
            first, last = segment_records[0].lsn, segment_records[-1].lsn
            self._segments.append(_Segment(path, first, last, size))
            self.size_bytes += size
        if self._segments:
            self.next_lsn = self._segments[-1].last_lsn + 1
            self.written_lsn = self.durable_lsn = self._segments[-1].last_lsn
            log.info(
                "journal %s: %d records left from the last run (%d bytes), "
                "%d of them unprocessed",
                self.directory,
                kept,
                self.size_bytes,
                len(records),
            )
        self._open_readers(readers)
        # LSNs never repeat, also once every segment was deleted: the store's
        # applied marks and the readers' positions name them.
        self.continue_after(
            max([self.processed_below, *(r.position for r in self.readers.values())])
            - 1
        )
        return records

    def continue_after(self, lsn: int) -> None:
        """Number new records after ``lsn`` (already used elsewhere)."""
        if lsn < self.next_lsn:
            return
        self.next_lsn = lsn + 1
        self.written_lsn = self.durable_lsn = lsn
        self.processed_below = max(self.processed_below, lsn + 1)
        # Nothing at or below ``lsn`` is on disk: no reader can have missed it.
        for reader in self.readers.values():
            reader.position = max(reader.position, lsn + 1)

    def _load_id(self) -> str:
        path = self.directory / ID_FILE
        if path.exists():
            return path.read_text().strip()
        journal_id = secrets.token_hex(16)
        path.write_text(journal_id + "\n")
        return journal_id

    def _open_readers(self, names: Sequence[str]) -> None:
        files = {reader_file_name(name): name for name in names}
        for path in self.directory.glob(READER_PREFIX + "*"):
            if path.name not in files:
                log.info("journal: forgetting the position of reader %s", path.name)
                path.unlink()
        for file_name, name in files.items():
            position = _read_position(self.directory / file_name, self.first_lsn)
            self.readers[name] = JournalReader(self, name, position)

    def _read_segment(self, path: Path) -> tuple[list[JournalRecord], int]:
        data = path.read_bytes()
        records, offset = _parse(data)
        if offset < len(data):
            log.warning(
                "journal %s: cutting %d bytes of a torn record",
                path,
                len(data) - offset,
            )
            with path.open("r+b") as handle:
                handle.truncate(offset)
        return records, offset

    def append_event(
        self, vm_id: int, boot: int, seq: int, received_at: int, payload: bytes
    ) -> int:
        """Write one accepted event; return its LSN or raise JournalFull."""
        body = EVENT_HEAD.pack(vm_id, boot, seq, received_at) + payload
        return self._append(RecordKind.EVENT, body)

    def append_gap(self, vm_id: int, gap: dict[str, Any]) -> int:
        """Write one gap record; return its LSN or raise JournalFull."""
        return self._append(RecordKind.GAP, _json_body(vm_id, gap))

    def append_finding(self, vm_id: int, finding: dict[str, Any]) -> int:
        """Write one reported finding (for readers); its LSN or JournalFull."""
        return self._append(RecordKind.FINDING, _json_body(vm_id, finding))

    def _append(self, kind: RecordKind, body: bytes) -> int:
        size = RECORD_HEADER.size + len(body)
        if self.size_bytes + size > self.max_bytes:
            self._drop_unread(self.size_bytes + size - self.max_bytes)
        if self.size_bytes + size > self.max_bytes:
            self.overflows += 1
            raise JournalFull(
                f"journal holds {self.size_bytes} of {self.max_bytes} bytes"
            )
        lsn = self.next_lsn
        segment = self._segments[-1] if self._segments else None
        if self._fd is None or segment is None or segment.size >= self.segment_bytes:
            segment = self._start_segment(lsn)
        # Records are written in runs (a syscall per record costs more than
        # encoding it); a crash leaves whole records and at most one torn
        # tail, which the next open cuts off.
        self._pending += _encode(lsn, kind, body)
        if len(self._pending) >= WRITE_BUFFER_BYTES:
            self.flush()
        segment.last_lsn = lsn
        segment.size += size
        self.size_bytes += size
        self.next_lsn = lsn + 1
        self.written_lsn = lsn
        self.appended += 1
        return lsn

    def _drop_unread(self, needed: int) -> None:
        """Delete applied segments kept only for lagging readers, oldest
        first, until ``needed`` bytes are free: export must never refuse
        ingest. The readers count what they skip."""
        freed = 0
        while freed < needed and self._segments:
            segment = self._segments[0]
            if segment.last_lsn >= self.processed_below:
                return
            for reader in self.readers.values():
                reader.skip_to(segment.last_lsn + 1)
            self._delete_first()
            freed += segment.size

    def _start_segment(self, lsn: int) -> _Segment:
        self._close_fd()
        path = self.directory / f"{lsn:016x}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        segment = _Segment(path, lsn, lsn - 1, 0)
        self._segments.append(segment)
        return segment

    def flush(self) -> None:
        """Hand the records appended so far to the kernel (not yet durable:
        they survive a receiver crash, not a power cut)."""
        if not self._pending or self._fd is None:
            return
        view = memoryview(self._pending)
        while view:
            view = view[os.write(self._fd, view) :]
        view.release()
        self._pending.clear()

    async def sync(self) -> int:
        """Make everything written so far durable; return the durable LSN."""
        target = self.written_lsn
        if target <= self.durable_lsn:
            return self.durable_lsn
        self.flush()
        if self.fsync and self._fd is not None:
            # A duplicate, so rotating segments meanwhile cannot close it.
            fd = os.dup(self._fd)
            try:
                await asyncio.to_thread(os.fdatasync, fd)
            finally:
                os.close(fd)
        # Records in older segments were synced before their segment closed.
        self.durable_lsn = max(self.durable_lsn, target)
        return self.durable_lsn

    def release(self, applied_below: int) -> None:
        """Everything below ``applied_below`` is stored and evaluated: note it
        and delete the segments no reader needs any more."""
        if applied_below != self.processed_below:
            self.processed_below = applied_below
            _write_position(self.directory / PROCESSED_FILE, applied_below)
        self.delete_released()

    def delete_released(self) -> None:
        """Delete segments every consumer is done with."""
        floor = min(
            [self.processed_below, *(r.position for r in self.readers.values())]
        )
        while self._segments and self._segments[0].last_lsn < floor:
            segment = self._segments[0]
            if segment is self._segments[-1] and segment.last_lsn < segment.first_lsn:
                return
            self._delete_first()

    def _delete_first(self) -> None:
        segment = self._segments[0]
        if segment is self._segments[-1]:
            # The open segment, every record processed: start a fresh one on
            # the next append.
            self._pending.clear()
            self._close_fd(sync=False)
        self._segments.pop(0)
        self.size_bytes -= segment.size
        segment.path.unlink(missing_ok=True)

    def segment_at(self, lsn: int) -> _Segment | None:
        """The segment holding ``lsn``, if it is on disk."""
        for segment in self._segments:
            if segment.first_lsn <= lsn <= segment.last_lsn:
                return segment
        return None

    def _close_fd(self, *, sync: bool = True) -> None:
        self.flush()
        if self._fd is not None:
            if sync and self.fsync:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Sync and close the open segment."""
        self._close_fd()
        self.durable_lsn = self.written_lsn


class JournalReader:
    """One consumer's way through the journal, in LSN order, from a position
    saved in the journal's directory (an exporter publishing to a sink)."""

    def __init__(self, journal: Journal, name: str, position: int) -> None:
        self.journal = journal
        self.name = name
        # The next LSN to read: everything below is done.
        self.position = position
        self.skipped = 0
        self._path = journal.directory / reader_file_name(name)
        # Where the next record of the segment last read starts, and its LSN.
        self._segment: Path | None = None
        self._offset = 0
        self._next_lsn = 0

    @property
    def lag(self) -> int:
        """Records written but not yet read and committed."""
        return max(0, self.journal.written_lsn + 1 - self.position)

    def has_unread(self) -> bool:
        """True if records at or past the position are written."""
        return self.position <= self.journal.written_lsn

    def skip_to(self, position: int) -> None:
        """Give up on the records below ``position`` (deleted unread)."""
        if position <= self.position:
            return
        skipped = position - self.position
        self.skipped += skipped
        log.warning(
            "journal reader %s: %d records deleted unread (journal full)",
            self.name,
            skipped,
        )
        self.position = position
        self._segment = None
        _write_position(self._path, position)

    def read(self, max_records: int) -> list[JournalRecord]:
        """Up to ``max_records`` durable records from the position on.

        The position moves only with :meth:`commit`; reading again without
        one returns the same records.
        """
        if self.position < self.journal.first_lsn:
            self.skip_to(self.journal.first_lsn)
        records: list[JournalRecord] = []
        position = self.position
        durable = self.journal.durable_lsn
        while len(records) < max_records and position <= durable:
            segment = self.journal.segment_at(position)
            if segment is None:
                break
            if segment.path != self._segment or position < self._next_lsn:
                self._segment, self._offset = segment.path, 0
                self._next_lsn = segment.first_lsn
            chunk = _read_chunk(segment.path, self._offset, segment.size)
            parsed, _ = _parse(chunk, limit=max_records - len(records))
            if not parsed:
                break
            for record in parsed:
                if record.lsn > durable or len(records) >= max_records:
                    return records
                self._offset += record.size
                self._next_lsn = record.lsn + 1
                if record.lsn >= position:
                    records.append(record)
                    position = record.lsn + 1
        return records

    def commit(self, position: int) -> None:
        """Everything below ``position`` is done: save it, free segments."""
        if position <= self.position:
            return
        self.position = position
        _write_position(self._path, position)
        self.journal.delete_released()


def reader_file_name(name: str) -> str:
    """The file that keeps reader ``name``'s position."""
    return READER_PREFIX + _UNSAFE_NAME.sub("_", name)


def _read_chunk(path: Path, offset: int, end: int) -> bytes:
    size = min(READ_CHUNK_BYTES, end - offset)
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
        if len(data) >= RECORD_HEADER.size:
            (length,) = struct.unpack_from("<I", data)
            whole = RECORD_HEADER.size + length
            if whole > len(data) and length <= MAX_RECORD_BYTES:
                # One record larger than a chunk: read all of it.
                data += handle.read(whole - len(data))
    return data


def _parse(
    data: bytes, offset: int = 0, limit: int | None = None
) -> tuple[list[JournalRecord], int]:
    """The whole, intact records in ``data`` from ``offset`` (at most
    ``limit`` of them) and where they end."""
    records: list[JournalRecord] = []
    while offset + RECORD_HEADER.size <= len(data) and len(records) != limit:
        length, crc, lsn, kind = RECORD_HEADER.unpack_from(data, offset)
        end = offset + RECORD_HEADER.size + length
        rest = data[offset + 8 : end]
        if length > MAX_RECORD_BYTES or end > len(data) or zlib.crc32(rest) != crc:
            break
        body = data[offset + RECORD_HEADER.size : end]
        records.append(_decode(lsn, RecordKind(kind), body, end - offset))
        offset = end
    return records, offset


def _read_position(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return default
    except ValueError:
        log.warning("journal: %s is unreadable, using %d", path, default)
        return default


def _write_position(path: Path, position: int) -> None:
    # Replaced whole; not synced: after a power cut an older position only
    # replays or republishes a little.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{position}\n")
    os.replace(temporary, path)


def _json_body(vm_id: int, value: dict[str, Any]) -> bytes:
    return GAP_HEAD.pack(vm_id) + json.dumps(value, separators=(",", ":")).encode()


def _decode(lsn: int, kind: RecordKind, body: bytes, size: int) -> JournalRecord:
    if kind is RecordKind.EVENT:
        vm_id, boot, seq, received_at = EVENT_HEAD.unpack_from(body)
        payload = body[EVENT_HEAD.size :]
        return JournalRecord(
            lsn, kind, vm_id, boot, seq, received_at, payload, size=size
        )
    (vm_id,) = GAP_HEAD.unpack_from(body)
    value = json.loads(body[GAP_HEAD.size :])
    boot = value.get("boot", 0) if kind is RecordKind.GAP else 0
    return JournalRecord(lsn, kind, vm_id, boot=int(boot), gap=value, size=size)
