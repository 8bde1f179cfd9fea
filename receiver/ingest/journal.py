"""The ingest journal: what the receiver accepted, on disk before it is acked.

Sessions append every accepted event (and every gap they account for) here,
then hand it to the ingest queue; a v2 guest is acknowledged only once the
record is synced. The database is fed from the queue; each batch stores, in
its own transaction, how far every VM's records are applied, so replaying
the journal after a crash stores each record exactly once.

Layout: ``<data-dir>/journal/`` holds an ``id`` file (this journal's name in
the database) and segment files named after their first record's LSN. A
record is ``<u32 body length, u32 crc32 of the rest, u64 lsn, u8 kind>``
followed by its body. A segment is deleted once every record in it is
applied. A torn record at the end (a crash mid-write) ends the replay and is
cut off.

Overflow policy: the journal never exceeds ``journal_max_bytes``. An append
that would raises :class:`JournalFull`; the session then refuses the event:
a v2 connection is closed unacknowledged (the guest keeps the events and
replays them on reconnect), a v1 event is dropped and counted as a
``host_overflow`` gap, since a v1 guest cannot resend.
"""

import asyncio
import enum
import json
import logging
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_HEADER = struct.Struct("<IIQB")
EVENT_HEAD = struct.Struct("<IIQq")
GAP_HEAD = struct.Struct("<I")
SEGMENT_SUFFIX = ".seg"
ID_FILE = "id"
# A record larger than this is corruption, not an event (frames are <= 1 MiB).
MAX_RECORD_BYTES = 16 << 20


class JournalFull(Exception):
    """Appending would take the journal past its size bound."""


class RecordKind(enum.IntEnum):
    """What a journal record holds."""

    EVENT = 1
    GAP = 2


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
    gap: dict[str, Any] | None = None


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
        self._segments: list[_Segment] = []
        self._fd: int | None = None

    def __len__(self) -> int:
        """Segments on disk."""
        return len(self._segments)

    @property
    def full_fraction(self) -> float:
        """How full the journal is, from 0 to 1."""
        return self.size_bytes / self.max_bytes if self.max_bytes else 0.0

    def open(self) -> list[JournalRecord]:
        """Open the journal and return every record left from the last run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.journal_id = self._load_id()
        records: list[JournalRecord] = []
        for path in sorted(self.directory.glob("*" + SEGMENT_SUFFIX)):
            segment_records, size = self._read_segment(path)
            if not segment_records:
                path.unlink()
                continue
            records.extend(segment_records)
            self._segments.append(
                _Segment(path, segment_records[0].lsn, segment_records[-1].lsn, size)
            )
            self.size_bytes += size
        if records:
            self.next_lsn = records[-1].lsn + 1
            self.written_lsn = self.durable_lsn = records[-1].lsn
            log.info(
                "journal %s: %d records left from the last run (%d bytes)",
                self.directory,
                len(records),
                self.size_bytes,
            )
        return records

    def _load_id(self) -> str:
        path = self.directory / ID_FILE
        if path.exists():
            return path.read_text().strip()
        journal_id = secrets.token_hex(16)
        path.write_text(journal_id + "\n")
        return journal_id

    def _read_segment(self, path: Path) -> tuple[list[JournalRecord], int]:
        data = path.read_bytes()
        records: list[JournalRecord] = []
        offset = 0
        while offset + RECORD_HEADER.size <= len(data):
            length, crc, lsn, kind = RECORD_HEADER.unpack_from(data, offset)
            end = offset + RECORD_HEADER.size + length
            rest = data[offset + 8 : end]
            if length > MAX_RECORD_BYTES or end > len(data) or zlib.crc32(rest) != crc:
                break
            body = data[offset + RECORD_HEADER.size : end]
            records.append(_decode(lsn, RecordKind(kind), body))
            offset = end
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
        body = GAP_HEAD.pack(vm_id) + json.dumps(gap, separators=(",", ":")).encode()
        return self._append(RecordKind.GAP, body)

    def _append(self, kind: RecordKind, body: bytes) -> int:
        size = RECORD_HEADER.size + len(body)
        if self.size_bytes + size > self.max_bytes:
            self.overflows += 1
            raise JournalFull(
                f"journal holds {self.size_bytes} of {self.max_bytes} bytes"
            )
        lsn = self.next_lsn
        segment = self._segments[-1] if self._segments else None
        if self._fd is None or segment is None or segment.size >= self.segment_bytes:
            segment = self._start_segment(lsn)
        # One write per record: a crash leaves whole records and at most one
        # torn tail, which the next open cuts off.
        os.write(self._fd, _encode(lsn, kind, body))  # type: ignore[arg-type]
        segment.last_lsn = lsn
        segment.size += size
        self.size_bytes += size
        self.next_lsn = lsn + 1
        self.written_lsn = lsn
        self.appended += 1
        return lsn

    def _start_segment(self, lsn: int) -> _Segment:
        self._close_fd()
        path = self.directory / f"{lsn:016x}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        segment = _Segment(path, lsn, lsn - 1, 0)
        self._segments.append(segment)
        return segment

    async def sync(self) -> int:
        """Make everything written so far durable; return the durable LSN."""
        target = self.written_lsn
        if target <= self.durable_lsn:
            return self.durable_lsn
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
        """Delete segments whose records all have an LSN below ``applied_below``."""
        while self._segments and self._segments[0].last_lsn < applied_below:
            segment = self._segments[0]
            if segment is self._segments[-1]:
                if segment.last_lsn < segment.first_lsn:
                    return
                # The open segment: start a fresh one on the next append.
                self._close_fd(sync=False)
            self._segments.pop(0)
            self.size_bytes -= segment.size
            segment.path.unlink(missing_ok=True)

    def _close_fd(self, *, sync: bool = True) -> None:
        if self._fd is not None:
            if sync and self.fsync:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Sync and close the open segment."""
        self._close_fd()
        self.durable_lsn = self.written_lsn


def _decode(lsn: int, kind: RecordKind, body: bytes) -> JournalRecord:
    if kind is RecordKind.EVENT:
        vm_id, boot, seq, received_at = EVENT_HEAD.unpack_from(body)
        return JournalRecord(
            lsn, kind, vm_id, boot, seq, received_at, body[EVENT_HEAD.size :]
        )
    (vm_id,) = GAP_HEAD.unpack_from(body)
    gap = json.loads(body[GAP_HEAD.size :])
    return JournalRecord(lsn, kind, vm_id, boot=int(gap.get("boot", 0)), gap=gap)
