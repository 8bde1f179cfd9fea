"""The ingestor releases journal records only once they are stored and
evaluated, also while one batch is evaluated and the next one written."""

import asyncio
from collections.abc import Sequence
from pathlib import Path

from bench.v2_guest import sample_event
from receiver.ingest.journal import Journal
from receiver.ingest.pipeline import Ingestor, IngestQueue, QueuedEvent
from receiver.ingest.records import record_event
from receiver.sessions.vm import VmState
from receiver.settings import VmSpec
from receiver.store.engine import create_engine, migrate

MACHINE = 0x1234


def accept(journal: Journal, queue: IngestQueue, vm: VmState, first: int) -> None:
    """Journal and queue ten events, as a session would."""
    for n in range(first, first + 10):
        event = sample_event(MACHINE, n)
        payload = event.SerializeToString()
        record = record_event(vm.vm_id, event)
        lsn = journal.append_event(vm.vm_id, record.boot, 0, n, payload)
        queue.push(QueuedEvent(vm, record, payload, n, lsn))


async def test_an_evaluation_ending_mid_write_keeps_the_next_batch(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await migrate(engine)
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20, segment_bytes=512)
    journal.open()
    queue = IngestQueue(1000)
    ingestor = Ingestor(
        engine, queue, batch_max_events=10, batch_interval_s=0.01, journal=journal
    )
    gates = [asyncio.Event(), asyncio.Event()]
    evaluated: list[int] = []

    async def evaluator(items: Sequence[QueuedEvent]) -> None:
        await gates[len(evaluated)].wait()
        evaluated.append(len(items))

    ingestor.add_evaluator(evaluator)
    vm = VmState(1, VmSpec("vm", "hybrid", uds_path=str(tmp_path / "vm.sock")))
    try:
        accept(journal, queue, vm, 1)
        await ingestor.flush_once()
        accept(journal, queue, vm, 11)
        second_lowest = queue.oldest_lsn()
        assert second_lowest is not None
        # The second batch is being written when the first one's evaluation
        # ends; then the second one is written and waits for its own.
        writing = asyncio.create_task(ingestor.flush_once())
        await asyncio.sleep(0)
        assert not len(queue) and not writing.done()
        gates[0].set()
        await writing
        assert evaluated == [10]
        assert ingestor.busy
        assert journal.processed_below <= second_lowest
        # Nothing of the second batch was deleted while it was written.
        assert journal.first_lsn <= second_lowest
        gates[1].set()
        await ingestor.run_until_idle()
        assert evaluated == [10, 10]
        assert journal.processed_below == journal.written_lsn + 1
    finally:
        for gate in gates:
            gate.set()
        await engine.dispose()
