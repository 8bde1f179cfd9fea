"""The ingest journal on its own: records, torn tails, release and its bound."""

from pathlib import Path

import pytest

from receiver.ingest.journal import Journal, JournalFull, RecordKind


def journal(path: Path, **overrides: int) -> Journal:
    options = {"max_bytes": 1 << 20, "segment_bytes": 4096} | overrides
    return Journal(path, fsync=False, **options)


async def test_records_come_back_after_a_restart(tmp_path: Path) -> None:
    first = journal(tmp_path)
    assert first.open() == []
    lsn = first.append_event(7, 0xABCD, 3, 123, b"payload")
    first.append_gap(7, {"boot": 0xABCD, "cause": "guest_overflow", "count": 2})
    assert await first.sync() == lsn + 1
    first.close()

    again = journal(tmp_path)
    event, gap = again.open()
    assert (event.lsn, event.kind, event.vm_id, event.boot, event.seq) == (
        1,
        RecordKind.EVENT,
        7,
        0xABCD,
        3,
    )
    assert (event.received_at, event.payload) == (123, b"payload")
    assert gap.gap == {"boot": 0xABCD, "cause": "guest_overflow", "count": 2}
    assert again.journal_id == first.journal_id
    assert again.append_event(7, 1, 0, 0, b"") == 3


def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    first = journal(tmp_path)
    first.open()
    first.append_event(1, 1, 1, 0, b"whole")
    first.append_event(1, 1, 2, 0, b"torn record")
    first.close()
    (segment,) = tmp_path.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-4])

    again = journal(tmp_path)
    (record,) = again.open()
    assert record.payload == b"whole"
    assert again.append_event(1, 1, 2, 0, b"next") == 2


def test_released_segments_are_deleted(tmp_path: Path) -> None:
    log = journal(tmp_path, segment_bytes=100)
    log.open()
    for n in range(10):
        log.append_event(1, 1, n + 1, 0, bytes(80))
    assert len(log) == 10
    log.release(6)
    assert len(log) == 5
    log.release(log.written_lsn + 1)
    assert log.size_bytes == 0
    assert list(tmp_path.glob("*.seg")) == []
    assert log.append_event(1, 1, 11, 0, b"") == 11


def test_the_size_bound_refuses_and_counts(tmp_path: Path) -> None:
    log = journal(tmp_path, max_bytes=300)
    log.open()
    log.append_event(1, 1, 1, 0, bytes(200))
    with pytest.raises(JournalFull):
        log.append_event(1, 1, 2, 0, bytes(200))
    assert log.overflows == 1
    log.release(2)
    log.append_event(1, 1, 2, 0, bytes(200))
