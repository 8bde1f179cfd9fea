"""Export throughput: journaled events published to a stream engine.

Writes ``--events`` execute events (the simulator's shape) to a fresh
journal, then times one exporter reading them back and publishing them
until the engine acknowledged every one. Prints one JSON line per sink.

    python -m bench.export [--events 50000] [--nats-url nats://127.0.0.1:4222]
                           [--kafka-bootstrap HOST:PORT | --kafka-tansu]

``--kafka-tansu`` starts a local Tansu broker (memory storage) to publish to.
"""

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.tansu import start_tansu
from bench.v2_guest import sample_event
from receiver.export.exporter import Exporter, Sink
from receiver.export.kafka import KafkaSink
from receiver.export.nats import NatsSink
from receiver.ingest.journal import Journal

MACHINE_ID = 0xE4B0E7
VMS = 10


def _journal(directory: Path, reader: str, events: int) -> Journal:
    journal = Journal(directory, max_bytes=4 << 30, segment_bytes=16 << 20)
    journal.open(readers=[reader])
    for n in range(1, events + 1):
        payload = sample_event(MACHINE_ID + n % VMS, n).SerializeToString()
        journal.append_event(1 + n % VMS, 0, n, time.time_ns(), payload)
    journal.release(journal.written_lsn + 1)
    return journal


async def measure(sink: Sink, events: int, root: Path) -> dict[str, object]:
    """Publish ``events`` journaled events through ``sink``; its figures."""
    reader = f"export-{sink.name}"
    journal = _journal(root / uuid.uuid4().hex, reader, events)
    await journal.sync()
    exporter = Exporter(journal, "bench-host", sink, lambda vm_id: f"vm-{vm_id}")
    run = asyncio.create_task(exporter.run())
    started = time.perf_counter()
    cpu_started = time.process_time()
    while exporter.reader.lag:
        await asyncio.sleep(0.01)
        if run.done():
            run.result()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    exporter.stop()
    await run
    await sink.close()
    journal.close()
    return {
        "sink": sink.name,
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "cpu_s": round(cpu, 2),
        "failures": exporter.failures,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


async def _run(args: argparse.Namespace) -> int:
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="csm-bench-export-") as root:
        broker = start_tansu(Path(root)) if args.kafka_tansu else None
        kafka = broker.bootstrap if broker is not None else args.kafka_bootstrap
        sinks: list[Sink] = []
        if args.nats_url:
            sinks.append(NatsSink(args.nats_url, f"CSM_BENCH_{tag}", f"csmbench{tag}"))
        if kafka:
            sinks.append(KafkaSink(kafka, f"csmbench.{tag}"))
        try:
            for sink in sinks:
                print(json.dumps(await measure(sink, args.events, Path(root))))
        finally:
            if broker is not None:
                broker.stop()
    if args.nats_url:
        await _delete_stream(args.nats_url, f"CSM_BENCH_{tag}")
    return 0


async def _delete_stream(url: str, stream: str) -> None:
    import nats

    client = await nats.connect(url)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--kafka-bootstrap", default="")
    parser.add_argument("--kafka-tansu", action="store_true")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
