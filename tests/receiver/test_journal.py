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


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


async def written(log: Journal, count: int, size: int = 80) -> list[int]:
    lsns = [
        log.append_event(1, 1, n + 1, 0, bytes([n % 256]) * size) for n in range(count)
    ]
    await log.sync()
    return lsns


async def test_a_reader_reads_in_order_across_segments(tmp_path: Path) -> None:
    log = journal(tmp_path, segment_bytes=300)
    log.open(readers=["export"])
    reader = log.readers["export"]
    lsns = await written(log, 20)
    assert len(log) > 3
    first = reader.read(7)
    assert [r.lsn for r in first] == lsns[:7]
    # Without a commit the same records come back.
    assert [r.lsn for r in reader.read(7)] == lsns[:7]
    reader.commit(first[-1].lsn + 1)
    rest = reader.read(100)
    assert [r.lsn for r in rest] == lsns[7:]
    assert [r.payload[0] for r in rest] == list(range(7, 20))
    reader.commit(rest[-1].lsn + 1)
    assert reader.read(100) == []


async def test_only_durable_records_are_read(tmp_path: Path) -> None:
    log = journal(tmp_path)
    log.open(readers=["export"])
    await written(log, 2)
    log.append_event(1, 1, 3, 0, b"not synced yet")
    reader = log.readers["export"]
    assert len(reader.read(10)) == 2
    await log.sync()
    assert [r.payload for r in reader.read(10)][-1] == b"not synced yet"


async def test_segments_stay_until_stored_and_read(tmp_path: Path) -> None:
    log = journal(tmp_path, segment_bytes=100)
    log.open(readers=["export"])
    await written(log, 10)
    log.release(11)  # all stored and evaluated
    assert len(log) == 10, "the reader has not read them yet"
    reader = log.readers["export"]
    reader.commit(reader.read(4)[-1].lsn + 1)
    assert len(log) == 6
    reader.commit(log.written_lsn + 1)
    assert len(log) == 0


async def test_a_reader_resumes_where_it_committed(tmp_path: Path) -> None:
    first = journal(tmp_path, segment_bytes=100)
    first.open(readers=["export", "old"])
    await written(first, 10)
    first.release(11)
    first.readers["export"].commit(6)
    first.readers["old"].commit(11)
    first.close()

    again = journal(tmp_path, segment_bytes=100)
    # All processed: nothing to replay, though a reader still needs some.
    assert again.open(readers=["export"]) == []
    assert again.processed_below == 11
    assert [r.lsn for r in again.readers["export"].read(100)] == list(range(6, 11))
    # A reader no longer configured holds nothing back.
    assert "reader.old" not in names(tmp_path)


async def test_a_lagging_reader_never_refuses_an_event(tmp_path: Path) -> None:
    log = journal(tmp_path, max_bytes=2000, segment_bytes=200)
    log.open(readers=["export"])
    reader = log.readers["export"]
    for _ in range(10):
        await written(log, 5)
        log.release(log.written_lsn + 1)
    # Everything was stored; the reader read nothing and lost the oldest.
    assert log.overflows == 0
    assert log.size_bytes <= 2000
    records = reader.read(1000)
    assert reader.skipped > 0
    assert records[0].lsn == reader.skipped + 1
    assert records[-1].lsn == log.written_lsn


async def test_unstored_records_still_refuse_when_full(tmp_path: Path) -> None:
    log = journal(tmp_path, max_bytes=2000, segment_bytes=200)
    log.open(readers=["export"])
    with pytest.raises(JournalFull):
        await written(log, 50)
    assert log.overflows == 1
    assert log.readers["export"].skipped == 0


async def test_findings_come_back_with_their_fields(tmp_path: Path) -> None:
    log = journal(tmp_path)
    log.open(readers=["export"])
    finding = {"kind": "reverse_shell", "boot": "0000abcd", "process_uuid": "ff"}
    log.append_finding(4, finding)
    await log.sync()
    (record,) = log.readers["export"].read(10)
    assert (record.kind, record.vm_id, record.gap) == (RecordKind.FINDING, 4, finding)
