"""``csm-bench ingest``: events per second from guest sockets into the
database, beside a plain COPY of the same rows, and how soon a process is
visible through the API.

The receiver runs in this process (so its CPU time and peak memory are this
process's); the simulated guests run in a child process and send
pre-encoded frames, so they compete for the CPU but not for this event loop.
"""

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no stubs

from bench.databases import (
    DEFAULT_PG_ADMIN_DSN,
    BenchDatabase,
    pg_server_version,
    throwaway_database,
)
from bench.machine import (
    describe_machine,
    peak_rss_mib,
    print_header,
    rerun_command,
    reset_peak_rss,
    rss_mib,
)
from bench.protocols import V1Guest
from bench.simulate import workload_seed
from bench.workload import GuestWorkload
from csm_wire.codec import HEADER_BYTES, Frame, FrameType
from csm_wire.messages import EventMessage, decode_guest_frame
from receiver.ingest.pipeline import QueuedEvent, build_batch
from receiver.ingest.records import record_event
from receiver.service import Service
from receiver.sessions.vm import VmState
from receiver.settings import Settings, VmSpec
from receiver.store.batch import EVENT_COLUMNS, Batch
from receiver.store.engine import create_engine, migrate
from receiver.store.pg_copy import (
    BOOT_COLUMNS,
    CONTAINER_COLUMNS,
    EXEC_COLUMNS,
    MEMEXEC_COLUMNS,
    PROCESS_COLUMNS,
)

TOKEN = "bench-operator-token"
STALL_TIMEOUT_S = 60.0
POLL_S = 0.002


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """How much to send in each phase."""

    vms: int
    events_per_vm: int
    latency_rate_per_s: int
    latency_s: float


QUICK = IngestPlan(vms=4, events_per_vm=25_000, latency_rate_per_s=50_000, latency_s=6)
FULL = IngestPlan(vms=16, events_per_vm=62_500, latency_rate_per_s=50_000, latency_s=30)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (None when there are none)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[
        round(fraction * 1000) - 1
    ]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _vm_names(plan: IngestPlan, prefix: str) -> list[str]:
    return [f"{prefix}-{index}" for index in range(plan.vms)]


def _simulator(
    names: Sequence[str],
    work: Path,
    *,
    events_per_vm: int,
    rate_per_vm: float,
    seed: int,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.cli", "simulate", "--pregenerate"]
    for name in names:
        command += ["--vm", f"{name}=hybrid:{work / name}"]
    command += [
        "--events-per-vm",
        str(events_per_vm),
        "--rate",
        str(rate_per_vm),
        "--seed",
        str(seed),
        "--manifest",
        str(work / f"manifest-{seed}.json"),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


class LatencyRecorder:
    """Arrival-to-commit time of every stored event while enabled."""

    def __init__(self) -> None:
        self.enabled = False
        self.seconds: list[float] = []

    async def on_batch(self, items: Sequence[QueuedEvent]) -> None:
        """Ingest listener: note how long each event waited."""
        if not self.enabled:
            return
        now = time.time_ns()
        self.seconds.extend((now - item.received_at) / 1e9 for item in items)


async def probe_visibility(
    service: Service, api_url: str, stop: asyncio.Event
) -> list[float]:
    """Follow the newest queued process until the API shows it; repeat."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        while not stop.is_set():
            item = service.queue.newest()
            if item is None or item.record.process is None:
                await asyncio.sleep(POLL_S)
                continue
            url = f"{api_url}/api/v1/vms/{item.vm.name}/processes/"
            url += item.record.process.uuid.hex()
            while True:
                async with http.get(url) as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(POLL_S)
            latencies.append((time.time_ns() - item.received_at) / 1e9)
    return latencies


def _settings(
    database: BenchDatabase, work: Path, names: list[str], queue: int
) -> Settings:
    return Settings(
        data_dir=work / "var",
        db=database.url,
        api="127.0.0.1:0",
        no_vsock=True,
        vms=tuple(VmSpec(n, "hybrid", uds_path=str(work / n)) for n in names),
        host="bench",
        api_token=TOKEN,
        ingest_queue_events=queue,
        log_level="WARNING",
    )


def _drops(service: Service) -> int:
    return sum(sum(vm.counters.drops.values()) for vm in service.registry)


def _accepted(service: Service) -> int:
    return sum(vm.counters.events for vm in service.registry)


async def _wait_stored(service: Service, expected: int) -> None:
    deadline = time.monotonic() + STALL_TIMEOUT_S
    last = -1
    while service.ingestor.events_written + _drops(service) < expected:
        if service.ingestor.events_written != last:
            last = service.ingestor.events_written
            deadline = time.monotonic() + STALL_TIMEOUT_S
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingest stalled at {last} of {expected} events")
        await asyncio.sleep(POLL_S)


async def _throughput(
    service: Service, plan: IngestPlan, work: Path, seed: int
) -> dict[str, Any]:
    names = _vm_names(plan, "bench")
    expected = plan.vms * plan.events_per_vm
    base_written = service.ingestor.events_written
    sender = _simulator(
        names, work, events_per_vm=plan.events_per_vm, rate_per_vm=0, seed=seed
    )
    try:
        while _accepted(service) == 0:
            if sender.poll() not in (None, 0):
                raise RuntimeError("the simulator failed")
            await asyncio.sleep(POLL_S)
        reset_peak_rss()
        rss_before = rss_mib()
        started = time.perf_counter()
        cpu_before = _cpu_s()
        await _wait_stored(service, base_written + expected)
        seconds = time.perf_counter() - started
        cpu = _cpu_s() - cpu_before
    finally:
        await asyncio.to_thread(sender.wait)
    return {
        "events": expected,
        "vms": plan.vms,
        "seconds": round(seconds, 3),
        "events_per_s": round(expected / seconds),
        "drops": _drops(service),
        "receiver_cpu_s": round(cpu, 2),
        "receiver_cpu_percent": round(100 * cpu / seconds, 1),
        "receiver_rss_before_mib": round(rss_before, 1),
        "receiver_peak_rss_mib": round(peak_rss_mib(), 1),
    }


async def _latency(
    service: Service, plan: IngestPlan, work: Path, seed: int, recorder: LatencyRecorder
) -> dict[str, Any]:
    names = _vm_names(plan, "bench")
    rate_per_vm = plan.latency_rate_per_s / plan.vms
    per_vm = int(rate_per_vm * plan.latency_s)
    drops_before = _drops(service)
    written_before = service.ingestor.events_written
    stop = asyncio.Event()
    api_url = f"http://127.0.0.1:{service.api_port}"
    sender = _simulator(
        names, work, events_per_vm=per_vm, rate_per_vm=rate_per_vm, seed=seed
    )
    recorder.enabled = True
    probes = asyncio.create_task(probe_visibility(service, api_url, stop))
    started = time.perf_counter()
    try:
        await asyncio.to_thread(sender.wait)
        await _wait_stored(service, written_before + per_vm * plan.vms)
    finally:
        stop.set()
        api = await probes
        recorder.enabled = False
    seconds = time.perf_counter() - started
    stored = service.ingestor.events_written - written_before
    return {
        "target_events_per_s": plan.latency_rate_per_s,
        "events": per_vm * plan.vms,
        "achieved_events_per_s": round(stored / seconds),
        "drops": _drops(service) - drops_before,
        "committed_p50_s": _round(percentile(recorder.seconds, 0.5)),
        "committed_p99_s": _round(percentile(recorder.seconds, 0.99)),
        "api_probes": len(api),
        "api_p50_s": _round(percentile(api, 0.5)),
        "api_p99_s": _round(percentile(api, 0.99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def build_rows(plan: IngestPlan, seed: int) -> Batch:
    """The rows the receiver stores for the throughput phase, merged."""
    items: list[QueuedEvent] = []
    protocol = V1Guest()
    received_at = time.time_ns()
    for index, name in enumerate(_vm_names(plan, "bench")):
        vm = VmState(index + 1, VmSpec(name, "hybrid", uds_path=name))
        events = GuestWorkload(workload_seed(seed, name)).events()
        boot = 0
        for _ in range(plan.events_per_vm):
            wire = protocol.event_frame(next(events))
            payload = wire[HEADER_BYTES:]
            message = decode_guest_frame(Frame(FrameType.EVENT, payload))
            assert isinstance(message, EventMessage)
            record = record_event(vm.vm_id, message.event, boot)
            boot = record.boot
            items.append(QueuedEvent(vm, record, payload, received_at))
    return build_batch(items)


def _row_sets(batch: Batch) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
    return [
        ("boots", BOOT_COLUMNS, [(*key, *span) for key, span in batch.boots.items()]),
        (
            "processes",
            PROCESS_COLUMNS,
            [
                tuple(getattr(p, c) for c in PROCESS_COLUMNS)
                for p in batch.sorted_patches()
            ],
        ),
        (
            "containers",
            CONTAINER_COLUMNS,
            [tuple(r[c] for c in CONTAINER_COLUMNS) for r in batch.containers.values()],
        ),
        (
            "execs",
            EXEC_COLUMNS,
            [tuple(r[c] for c in EXEC_COLUMNS) for r in batch.execs.values()],
        ),
        (
            "memexecs",
            MEMEXEC_COLUMNS,
            [tuple(r[c] for c in MEMEXEC_COLUMNS) for r in batch.memexecs],
        ),
        ("events", EVENT_COLUMNS, list(batch.events)),
    ]


async def copy_ceiling(database: BenchDatabase, batch: Batch) -> float:
    """Seconds a plain COPY (SQLite: plain INSERTs) of the rows takes."""
    engine = create_engine(database.url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    row_sets = _row_sets(batch)
    if database.kind == "sqlite":
        return await asyncio.to_thread(_sqlite_inserts, database.dsn, row_sets)
    connection = await asyncpg.connect(database.dsn)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            for name, columns, rows in row_sets:
                if rows:
                    await connection.copy_records_to_table(
                        name, records=rows, columns=list(columns)
                    )
        return time.perf_counter() - started
    finally:
        await connection.close()


def _sqlite_inserts(
    path: str, row_sets: list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]
) -> float:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        with connection:
            for name, columns, rows in row_sets:
                marks = ", ".join("?" * len(columns))
                connection.executemany(
                    f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", rows
                )
        return time.perf_counter() - started
    finally:
        connection.close()


async def bench_database(
    kind: str, admin_dsn: str, plan: IngestPlan, seed: int
) -> dict[str, Any]:
    """Every ingest figure for one database kind."""
    result: dict[str, Any] = {"database": kind}
    names = _vm_names(plan, "bench")
    queue = max(100_000, plan.vms * plan.events_per_vm)
    with tempfile.TemporaryDirectory(prefix="csm-bench-") as directory:
        work = Path(directory)
        async with throwaway_database(kind, admin_dsn) as database:
            if kind == "postgresql":
                result["server"] = "PostgreSQL " + await pg_server_version(database.dsn)
            else:
                result["server"] = "SQLite " + sqlite3.sqlite_version
            service = Service(_settings(database, work, names, queue))
            recorder = LatencyRecorder()
            service.ingestor.add_listener(recorder.on_batch)
            await service.start()
            try:
                result.update(await _throughput(service, plan, work, seed))
                result["latency"] = await _latency(
                    service, plan, work, seed + 1, recorder
                )
            finally:
                await service.stop()
    batch = build_rows(plan, seed)
    result["rows"] = {
        "processes": len(batch.processes),
        "execs": len(batch.execs),
        "memexecs": len(batch.memexecs),
        "events": len(batch.events),
    }
    async with throwaway_database(kind, admin_dsn) as database:
        seconds = await copy_ceiling(database, batch)
    result["copy_seconds"] = round(seconds, 3)
    result["copy_events_per_s"] = round(len(batch.events) / seconds)
    result["ratio"] = round(result["events_per_s"] / result["copy_events_per_s"], 3)
    return result


def _targets(values: Sequence[str] | None) -> list[tuple[str, str]]:
    if not values:
        return [("postgresql", DEFAULT_PG_ADMIN_DSN), ("sqlite", "")]
    targets = []
    for value in values:
        if value.startswith("sqlite"):
            targets.append(("sqlite", ""))
        else:
            targets.append(("postgresql", value.replace("+asyncpg", "")))
    return targets


async def run_ingest(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run every requested database and gather one report."""
    plan = QUICK if args.quick else FULL
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "quick": bool(args.quick),
        "machine": describe_machine(),
        "command": rerun_command(argv),
        "databases": {},
    }
    for kind, dsn in _targets(args.db):
        report["databases"][kind] = await bench_database(kind, dsn, plan, args.seed)
    first = next(iter(report["databases"].values()))
    for key in ("events", "events_per_s", "copy_events_per_s", "ratio"):
        report[key] = first[key]
    report["primary_database"] = first["database"]
    return report


def print_report(report: dict[str, Any], argv: Sequence[str]) -> None:
    """The human-readable form."""
    print_header("csm-bench ingest: events end to end vs a plain COPY", argv)
    for kind, result in report["databases"].items():
        latency = result["latency"]
        print(f"-- {kind} ({result['server']})")
        print(
            f"  end to end: {result['events']} events from {result['vms']} VMs in "
            f"{result['seconds']} s = {result['events_per_s']} events/s, "
            f"{result['drops']} dropped"
        )
        print(
            f"  COPY of the same rows: {result['copy_events_per_s']} events/s; "
            f"ratio {result['ratio']}"
        )
        print(
            f"  receiver: {result['receiver_cpu_s']} s CPU "
            f"({result['receiver_cpu_percent']} % of a core), peak RSS "
            f"{result['receiver_peak_rss_mib']} MiB "
            f"(from {result['receiver_rss_before_mib']} MiB)"
        )
        print(
            f"  at {latency['target_events_per_s']} events/s offered "
            f"({latency['achieved_events_per_s']} stored/s, {latency['drops']} "
            f"dropped): arrival to commit p50 {latency['committed_p50_s']} s, "
            f"p99 {latency['committed_p99_s']} s; visible via API p50 "
            f"{latency['api_p50_s']} s, p99 {latency['api_p99_s']} s "
            f"({latency['api_probes']} probes)"
        )


def run_ingest_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``csm-bench ingest``."""
    try:
        report = asyncio.run(run_ingest(args, argv))
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        print(f"csm-bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report, argv)
    return 0
