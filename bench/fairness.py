"""Fairness under flood: a quiet VM's per-event latency while another floods.

One v2 guest floods as fast as the receiver lets it; another sends 100
events/s. For every quiet event, the latency is the time from the guest
producing it to the store committing it (seen by an ingest listener).

    python -m bench.fairness [--db URL] [--seconds 10] [--rate 100]
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.v2_guest import V2TestGuest, sample_event, sample_uuid
from receiver.ingest.pipeline import QueuedEvent
from receiver.service import Service
from receiver.settings import Settings, VmSpec

FLOOD_MACHINE = 0xF100D000
QUIET_MACHINE = 0x0000C0DE
FLOOD_BACKLOG_EVENTS = 20_000


def _settings(root: Path, db: str) -> Settings:
    return Settings(
        data_dir=root / "var",
        db=db,
        api="127.0.0.1:0",
        no_vsock=True,
        vms=tuple(
            VmSpec(name, "hybrid", uds_path=str(root / f"{name}.vsock"))
            for name in ("flood", "quiet")
        ),
        host="bench",
        api_token="bench",
        log_level="WARNING",
    )


async def _flood(guest: V2TestGuest, stop: asyncio.Event) -> int:
    n = 0
    while not stop.is_set():
        if guest.stream.buffered_events > FLOOD_BACKLOG_EVENTS:
            await asyncio.sleep(0.001)
            continue
        for _ in range(1000):
            n += 1
            guest.produce(sample_event(FLOOD_MACHINE, n))
        await asyncio.sleep(0)
    return n


async def _wait_stored(
    stored: dict[bytes, float], count: int, done: asyncio.Event
) -> None:
    while True:
        if len(stored) >= count:
            done.set()
            return
        await asyncio.sleep(0.05)


async def measure(db: str, seconds: float, rate: float) -> dict[str, object]:
    """Run the scenario once and return what was measured."""
    with tempfile.TemporaryDirectory(prefix="csm-fairness-") as tmp:
        root = Path(tmp)
        service = Service(_settings(root, db or f"sqlite+aiosqlite:///{root}/csm.db"))
        await service.start()
        sent: dict[bytes, float] = {}
        stored: dict[bytes, float] = {}
        flood_stored = 0

        async def on_batch(items: Sequence[QueuedEvent]) -> None:
            nonlocal flood_stored
            now = time.perf_counter()
            for item in items:
                if item.vm.name == "quiet" and item.record.uuid is not None:
                    stored.setdefault(item.record.uuid, now)
                else:
                    flood_stored += 1

        service.ingestor.add_listener(on_batch)
        port = service.settings.port
        flood = V2TestGuest(root / f"flood.vsock_{port}", FLOOD_MACHINE)
        quiet = V2TestGuest(root / f"quiet.vsock_{port}", QUIET_MACHINE)
        stop = asyncio.Event()
        try:
            await flood.start()
            await quiet.start()
            await asyncio.wait_for(flood.connected.wait(), 10)
            await asyncio.wait_for(quiet.connected.wait(), 10)
            flooding = asyncio.create_task(_flood(flood, stop))
            await asyncio.sleep(1.0)
            started = time.perf_counter()
            count = int(seconds * rate)
            for n in range(1, count + 1):
                due = started + n / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent[sample_uuid(QUIET_MACHINE, n)] = time.perf_counter()
                quiet.produce(sample_event(QUIET_MACHINE, n))
            elapsed = time.perf_counter() - started
            await quiet.wait_acked()
            all_stored = asyncio.Event()
            checker = asyncio.create_task(_wait_stored(stored, count, all_stored))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_stored.wait(), 30)
            checker.cancel()
            flood_rate = flood_stored / (time.perf_counter() - started)
            stop.set()
            await flooding
        finally:
            await flood.stop()
            await quiet.stop()
            await service.stop()
    latencies = sorted(stored[u] - sent[u] for u in sent if u in stored)
    return {
        "database": "sqlite" if not db else db.split("://", 1)[0],
        "quiet_events_sent": len(sent),
        "quiet_events_stored": len(latencies),
        "quiet_rate_per_s": round(len(sent) / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "latency_max_ms": round(latencies[-1] * 1000, 1),
        "within_1s": sum(1 for x in latencies if x <= 1.0),
        "flood_stored_per_s": round(flood_rate),
        "flood_pauses": service.registry.get("flood").delivery.pauses,  # type: ignore[union-attr]
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.fairness")
    parser.add_argument("--db", default="", help="SQLAlchemy URL (default SQLite)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.db, args.seconds, args.rate))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        "fairness: one v2 guest flooding, one sending "
        f"{args.rate:g} events/s for {args.seconds:g}s, in-process receiver"
    )
    for key, value in result.items():
        print(f"  {key}: {value}")
    print("rerun: python -m bench.fairness " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
