"""Property test: any arrival order (and batching) of one process's events
gives the same stored process, in memory and through the database."""

import asyncio
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from csm_wire.codec import FrameDecoder
from csm_wire.messages import EventMessage, decode_guest_frame
from receiver.ingest.records import DETAIL_FIELDS, ProcessPatch, record_event
from receiver.store.engine import create_engine, migrate
from receiver.store.models import processes
from receiver.store.writer import Batch, write_batch
from tests.receiver.test_boots_and_merging import CHILD, FRAMES

CHILD_PATCHES = []
for frame in FrameDecoder().feed(b"".join(FRAMES)):
    message = decode_guest_frame(frame)
    assert isinstance(message, EventMessage)
    record = record_event(1, message.event)
    if record.uuid == CHILD:
        assert record.process is not None
        CHILD_PATCHES.append(record.process)

COMPARED = (*DETAIL_FIELDS, "exec_at", "exited_at", "pid", "started_at")


def _copy(patch: ProcessPatch) -> ProcessPatch:
    return ProcessPatch(**patch.as_row())


def _merged(order: list[int]) -> ProcessPatch:
    result = _copy(CHILD_PATCHES[order[0]])
    for index in order[1:]:
        result.merge(_copy(CHILD_PATCHES[index]))
    return result


def _shown(values: dict[str, object]) -> dict[str, object]:
    return {name: values[name] for name in COMPARED}


REFERENCE = _shown(_merged(list(range(len(CHILD_PATCHES)))).as_row())
orders = st.permutations(list(range(len(CHILD_PATCHES))))


@given(order=orders)
def test_in_memory_merge_is_order_independent(order: list[int]) -> None:
    assert _shown(_merged(order).as_row()) == REFERENCE


async def _store_in_batches(
    url: str, order: list[int], cuts: list[int]
) -> dict[str, object]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        points = sorted({c % (len(order) + 1) for c in cuts} | {0, len(order)})
        for start, end in itertools.pairwise(points):
            batch = Batch()
            for index in order[start:end]:
                batch.add_process(_copy(CHILD_PATCHES[index]))
            await write_batch(engine, batch)
        async with engine.connect() as connection:
            row = (await connection.execute(select(processes))).one()
        return _shown(row._asdict())
    finally:
        await engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(order=orders, cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_database_merge_matches_in_memory_merge(
    tmp_path_factory: object, order: list[int], cuts: list[int]
) -> None:
    assert hasattr(tmp_path_factory, "mktemp")
    directory: Path = tmp_path_factory.mktemp("merge")
    url = f"sqlite+aiosqlite:///{directory / 'csm.db'}"
    assert asyncio.run(_store_in_batches(url, order, cuts)) == REFERENCE
