"""Fleet ingest: several receivers (one per host) on one PostgreSQL.

Starts ``--receivers`` in-process receivers with distinct ``--host`` names on
one database, each with ``--vms-per-host`` hybrid VMs, streams
``--events-per-vm`` synthetic exec/exit events into every VM at once and
measures the time until every event is stored. Prints one JSON object.

    python -m bench.fleet_ingest [--db URL] [--receivers 3] [--vms-per-host 2]
        [--events-per-vm 20000] [--quick] [--nats-url nats://127.0.0.1:4222]

With ``--nats-url`` every receiver also exports its journal to JetStream (a
stream of its own, deleted afterwards), and the run ends once everything is
stored and published.

Without ``--db`` a throwaway database is made on the PostgreSQL at
``CSM_TEST_PG_DSN`` (default postgresql://postgres@127.0.0.1:5432/test).
"""

import argparse
import asyncio
import json
import os
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # ships no type hints
import nats

from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_event, encode_heartbeat
from receiver.service import Service
from receiver.settings import Settings, VmSpec

BASE_NS = 1_764_000_000_000_000_000
ADMIN_DSN = os.environ.get(
    "CSM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SEND_CHUNK_BYTES = 256 * 1024


def guest_stream(machine_id: int, events: int) -> bytes:
    """A heartbeat, then exec and exit pairs of distinct processes."""
    frames = [encode_heartbeat()]
    for n in range(events // 2):
        at = BASE_NS + n * 1000
        process_uuid = struct.pack("<IQI", machine_id, at, 1000 + n)
        process = pb.Process(
            creation_timestamp=at,
            uuid=process_uuid,
            pid=1000 + n,
            binary=pb.File(fullpath=b"/usr/bin/worker"),
            args=pb.ProcessArguments(argv=[b"worker", str(n).encode()]),
        )
        frames.append(
            encode_event(pb.Event(timestamp=at, execute=pb.ExecuteEvent(proc=process)))
        )
        frames.append(
            encode_event(
                pb.Event(
                    timestamp=at + 500, exit=pb.ExitEvent(process_uuid=process_uuid)
                )
            )
        )
    return b"".join(frames)


async def send(path: Path, data: bytes) -> None:
    """Stream ``data`` into a hybrid listener and close."""
    _reader, writer = await asyncio.open_unix_connection(os.fspath(path))
    for offset in range(0, len(data), SEND_CHUNK_BYTES):
        writer.write(data[offset : offset + SEND_CHUNK_BYTES])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def make_database() -> tuple[str, str]:
    """A throwaway database; returns (name, SQLAlchemy URL)."""
    name = f"csm_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "")
    return name, f"postgresql+asyncpg://{base}/{name}"


async def drop_database(name: str) -> None:
    """Drop a database made by :func:`make_database`."""
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def receiver_settings(
    workdir: Path, db: str, host: str, vms: int, nats_url: str = ""
) -> Settings:
    """Settings of one host's receiver with ``vms`` hybrid VMs."""
    specs = tuple(
        VmSpec(f"vm{n}", "hybrid", uds_path=str(workdir / host / f"vm{n}.vsock"))
        for n in range(vms)
    )
    return Settings(
        data_dir=workdir / host,
        db=db,
        api="127.0.0.1:0",
        no_vsock=True,
        vms=specs,
        host=host,
        api_token="bench",
        ingest_queue_events=1_000_000,
        nats_url=nats_url,
        nats_stream=f"CSM_BENCH_{host.replace('-', '_').upper()}",
        nats_subject=f"csmbench.{host}",
    )


def watch_stored(services: Sequence[Service], total: int) -> asyncio.Event:
    """An event set once the receivers together stored ``total`` events."""
    done = asyncio.Event()

    async def stored(_batch: Sequence[object]) -> None:
        if sum(s.ingestor.events_written for s in services) >= total:
            done.set()

    for service in services:
        service.ingestor.add_listener(stored)
    return done


async def all_exported(services: Sequence[Service]) -> None:
    """Wait until every receiver's exporters published all they journaled."""
    exporters = [e for s in services for e in s.fleet.exporters]
    while True:
        if not any(exporter.reader.lag for exporter in exporters):
            return
        await asyncio.sleep(0.01)


async def delete_streams(url: str, services: Sequence[Service]) -> None:
    """Delete the JetStream streams the run published to."""
    client = await nats.connect(url)
    try:
        for service in services:
            await client.jetstream().delete_stream(service.settings.nats_stream)
    finally:
        await client.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurement and return its figures."""
    dropped_db = None
    db = args.db
    if not db:
        dropped_db, db = await make_database()
    workdir = Path(tempfile.mkdtemp(prefix="csm-fleet-bench-"))
    hosts = [f"bench-host-{n}" for n in range(args.receivers)]
    services = [
        Service(receiver_settings(workdir, db, host, args.vms_per_host, args.nats_url))
        for host in hosts
    ]
    exported_s = None
    try:
        await asyncio.gather(*(s.start() for s in services))
        streams = {
            (h, v): guest_stream(0x1000 * (h + 1) + v, args.events_per_vm)
            for h in range(len(hosts))
            for v in range(args.vms_per_host)
        }
        total = len(streams) * (args.events_per_vm // 2 * 2)
        all_stored = watch_stored(services, total)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                send(Path(f"{workdir / hosts[h] / f'vm{v}.vsock'}_4444"), data)
                for (h, v), data in streams.items()
            )
        )
        sent_s = time.perf_counter() - started
        await all_stored.wait()
        elapsed = time.perf_counter() - started
        if args.nats_url:
            await all_exported(services)
            exported_s = round(time.perf_counter() - started, 3)
    finally:
        for service in services:
            await service.stop()
        if dropped_db:
            await drop_database(dropped_db)
        if args.nats_url:
            await delete_streams(args.nats_url, services)
    drops = sum(sum(vm.counters.drops.values()) for s in services for vm in s.registry)
    return {
        "benchmark": "fleet_ingest",
        "receivers": len(hosts),
        "vms": len(streams),
        "events": total,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent_s, 3),
        "events_per_s": round(total / elapsed),
        "events_per_s_per_receiver": round(total / elapsed / len(hosts)),
        "drops": drops,
        "exported_seconds": exported_s,
        "database": "postgresql (one database shared by every receiver)",
        "cpus": os.cpu_count(),
        "rerun": " ".join(["python -m bench.fleet_ingest", *sys.argv[1:]]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the figures as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_ingest")
    parser.add_argument("--db", default="", help="PostgreSQL URL (default: throwaway)")
    parser.add_argument("--receivers", type=int, default=3)
    parser.add_argument("--vms-per-host", type=int, default=2)
    parser.add_argument("--events-per-vm", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 events per VM")
    parser.add_argument("--nats-url", default="", help="also export to JetStream")
    args = parser.parse_args(argv)
    if args.quick:
        args.events_per_vm = 2_000
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
