"""``csm-bench scale``: 1,000 VMs connected at once, and API queries on a
PostgreSQL store of millions of processes.

Connections: the receiver runs here; the guests (connect, greet, answer
the configuration, beat every second) run in a child process. Memory is
this process's resident set before the VMs are registered and once every
guest is connected and beating.

Queries: processes are generated with ``generate_series`` straight into a
dedicated database: VMs of about 100,000 processes, trees of fan-out 4
(depth about 9), containers of 2,500 and, in the first VM, one container
of ``--tree`` processes. Latency is measured through the real API.
"""

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no stubs

from bench.databases import (
    DEFAULT_PG_ADMIN_DSN,
    create_pg_database,
    drop_pg_database,
    pg_dsn,
    pg_server_version,
    sqlalchemy_url,
)
from bench.ingest import percentile
from bench.machine import describe_machine, print_header, rerun_command, rss_mib
from receiver.service import Service
from receiver.settings import Settings, VmSpec
from receiver.store.engine import create_engine, migrate

TOKEN = "bench-operator-token"
PROCESSES_PER_VM = 100_000
TREE_CONTAINER_ID = 42
QUERY_SAMPLES = 200
SCALE_DATABASE = "csm_bench_scale"
CONNECT_TIMEOUT_S = 120.0


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``needed``, within the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _settings(url: str, work: Path, vms: tuple[VmSpec, ...]) -> Settings:
    return Settings(
        data_dir=work / "var",
        db=url,
        api="127.0.0.1:0",
        no_vsock=True,
        vms=vms,
        host="bench",
        api_token=TOKEN,
        heartbeat_interval_s=1.0,
        log_level="WARNING",
    )


async def measure_connections(vm_count: int, admin_dsn: str) -> dict[str, Any]:
    """Memory per connected, beating VM."""
    # Each VM: a listener, the accepted socket, the guest's socket (child).
    fd_limit = raise_fd_limit(3 * vm_count + 256)
    name = f"csm_bench_conn_{int(time.time())}"
    database = await create_pg_database(admin_dsn, name)
    try:
        with tempfile.TemporaryDirectory(prefix="csm-bench-") as directory:
            work = Path(directory)
            service = Service(_settings(database.url, work, ()))
            await service.start()
            try:
                return await _connect_fleet(service, work, vm_count, fd_limit)
            finally:
                await service.stop()
    finally:
        await drop_pg_database(admin_dsn, name)


async def _connect_fleet(
    service: Service, work: Path, vm_count: int, fd_limit: int
) -> dict[str, Any]:
    rss_before = rss_mib()
    names = [f"idle-{index:04d}" for index in range(vm_count)]
    for vm_name in names:
        await service.add_vm(VmSpec(vm_name, "hybrid", uds_path=str(work / vm_name)))
    rss_registered = rss_mib()
    command = [sys.executable, "-m", "bench.cli", "simulate"]
    for vm_name in names:
        command += ["--vm", f"{vm_name}=hybrid:{work / vm_name}"]
    command += ["--events-per-vm", "1", "--heartbeat-interval-s", "1"]
    command += ["--hold-s", "8"]
    guests = _start(command)
    try:
        started = time.monotonic()
        while _connected(service) < vm_count:
            if (
                guests.poll() is not None
                or time.monotonic() - started > CONNECT_TIMEOUT_S
            ):
                break
            await asyncio.sleep(0.05)
        connected_s = time.monotonic() - started
        beats_before = _heartbeats(service)
        await asyncio.sleep(3)
        beats = _heartbeats(service) - beats_before
        connected = _connected(service)
        rss_connected = rss_mib()
    finally:
        await asyncio.to_thread(guests.wait)
    extra = rss_connected - rss_before
    return {
        "vms": vm_count,
        "connected": connected,
        "connect_all_s": round(connected_s, 2),
        "heartbeats_per_s": round(beats / 3),
        "fd_soft_limit": fd_limit,
        "rss_before_mib": round(rss_before, 1),
        "rss_registered_mib": round(rss_registered, 1),
        "rss_connected_mib": round(rss_connected, 1),
        "extra_mib": round(extra, 1),
        "kib_per_vm": round(extra * 1024 / vm_count, 1),
    }


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _connected(service: Service) -> int:
    return sum(1 for vm in service.registry if vm.sessions)


def _heartbeats(service: Service) -> int:
    return sum(vm.counters.heartbeats for vm in service.registry)


GENERATE_SQL = """
INSERT INTO processes (vm_id, boot, uuid, pid, started_at, parent_uuid,
    parent_pid, "binary", container_id, container_pid, exec_session_id,
    exec_at, exited_at)
SELECT vm, 1000 + vm,
    int4send((1000 + vm)::int) || int8send(start) || int4send(local::int),
    local, start,
    CASE WHEN local > 1 THEN
        int4send((1000 + vm)::int) || int8send($2 + (local / 4) * 1000)
        || int4send((local / 4)::int) END,
    CASE WHEN local > 1 THEN local / 4 END,
    ('/usr/bin/tool' || (local % 97))::bytea,
    CASE WHEN vm = 1 AND local <= $3 THEN 42 ELSE 100 + local / 2500 END,
    local % 2500, 0, start, CASE WHEN local % 3 = 0 THEN start + 5000000 END
FROM (
    SELECT i, 1 + (i - 1) / $1 AS vm, 1 + (i - 1) % $1 AS local,
        $2 + (1 + (i - 1) % $1) * 1000 AS start
    FROM generate_series($4::bigint, $5::bigint) AS i
) AS g
"""


async def prepare_query_database(
    admin_dsn: str, processes: int, tree: int, keep: bool
) -> tuple[str, int, float]:
    """The query database with ``processes`` rows: (DSN, VMs, seconds)."""
    name = f"{SCALE_DATABASE}_{processes}"
    dsn = pg_dsn(admin_dsn, name)
    vm_count = max(1, -(-processes // PROCESSES_PER_VM))
    if keep:
        with contextlib.suppress(asyncpg.InvalidCatalogNameError):
            connection = await asyncpg.connect(dsn)
            try:
                count = await connection.fetchval("SELECT count(*) FROM processes")
            finally:
                await connection.close()
            if count == processes:
                return dsn, vm_count, 0.0
    started = time.perf_counter()
    database = await create_pg_database(admin_dsn, name)
    engine = create_engine(database.url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.executemany(
            "INSERT INTO vms (id, name, host, transport, address, registered,"
            " created_at) VALUES ($1, $2, 'bench', 'hybrid', $2, true, 0)",
            [(vm, f"big-{vm}") for vm in range(1, vm_count + 1)],
        )
        await connection.execute("SELECT setval('vms_id_seq', $1)", vm_count)
        step = 1_000_000
        for first in range(1, processes + 1, step):
            last = min(processes, first + step - 1)
            await connection.execute(
                GENERATE_SQL,
                PROCESSES_PER_VM,
                1_764_000_000_000_000_000,
                tree,
                first,
                last,
            )
        await connection.execute("VACUUM ANALYZE processes")
    finally:
        await connection.close()
    return dsn, vm_count, time.perf_counter() - started


async def measure_queries(
    admin_dsn: str, processes: int, tree: int, keep: bool
) -> dict[str, Any]:
    """API latency of one process and of a container's tree."""
    dsn, vm_count, generate_s = await prepare_query_database(
        admin_dsn, processes, tree, keep
    )
    try:
        with tempfile.TemporaryDirectory(prefix="csm-bench-") as directory:
            service = Service(_settings(sqlalchemy_url(dsn), Path(directory), ()))
            await service.start()
            try:
                result = await _time_queries(service, dsn, tree)
            finally:
                await service.stop()
    finally:
        if not keep:
            await drop_pg_database(admin_dsn, dsn.rsplit("/", 1)[1])
    result.update(processes=processes, vms=vm_count, generate_s=round(generate_s, 1))
    return result


async def _time_queries(service: Service, dsn: str, tree: int) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        uuids = await connection.fetch(
            "SELECT uuid FROM processes TABLESAMPLE SYSTEM (1)"
            " WHERE vm_id = 1 LIMIT $1",
            QUERY_SAMPLES,
        )
    finally:
        await connection.close()
    base = f"http://127.0.0.1:{service.api_port}/api/v1/vms/big-1"
    one: list[float] = []
    trees: list[float] = []
    tree_size = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for record in uuids:
            started = time.perf_counter()
            async with http.get(f"{base}/processes/{record['uuid'].hex()}") as reply:
                body = await reply.json()
                assert reply.status == 200, body
            one.append(time.perf_counter() - started)
        for _ in range(20):
            started = time.perf_counter()
            async with http.get(
                f"{base}/tree?container_id={TREE_CONTAINER_ID}"
            ) as reply:
                body = await reply.json()
                assert reply.status == 200, body
            trees.append(time.perf_counter() - started)
            tree_size = len(body["items"])
    return {
        "process_queries": len(one),
        "process_p50_ms": _ms(percentile(one, 0.5)),
        "process_p99_ms": _ms(percentile(one, 0.99)),
        "tree_processes": tree_size,
        "tree_queries": len(trees),
        "tree_p50_ms": _ms(percentile(trees, 0.5)),
        "tree_p99_ms": _ms(percentile(trees, 0.99)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def run_scale(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Both scale measurements."""
    admin_dsn = (args.db or DEFAULT_PG_ADMIN_DSN).replace("+asyncpg", "")
    report: dict[str, Any] = {
        "benchmark": "scale",
        "machine": describe_machine(),
        "command": rerun_command(argv),
        "server": "PostgreSQL " + await pg_server_version(admin_dsn),
    }
    report["connections"] = await measure_connections(args.vms, admin_dsn)
    report["queries"] = await measure_queries(
        admin_dsn, args.processes, args.tree, args.keep
    )
    return report


def print_report(report: dict[str, Any], argv: Sequence[str]) -> None:
    """The human-readable form."""
    print_header("csm-bench scale: connected VMs and query latency", argv)
    c = report["connections"]
    print(
        f"-- {c['connected']} of {c['vms']} VMs connected in {c['connect_all_s']} s, "
        f"{c['heartbeats_per_s']} heartbeats/s; RSS {c['rss_before_mib']} MiB "
        f"-> {c['rss_connected_mib']} MiB: +{c['extra_mib']} MiB, "
        f"{c['kib_per_vm']} KiB per VM (fd soft limit {c['fd_soft_limit']})"
    )
    q = report["queries"]
    print(
        f"-- {report['server']}, {q['processes']} processes in {q['vms']} VMs "
        f"(generated in {q['generate_s']} s)"
    )
    print(
        f"  one process with ancestors and children: p50 {q['process_p50_ms']} ms, "
        f"p99 {q['process_p99_ms']} ms ({q['process_queries']} queries)"
    )
    print(
        f"  container tree of {q['tree_processes']} processes: p50 "
        f"{q['tree_p50_ms']} ms, p99 {q['tree_p99_ms']} ms "
        f"({q['tree_queries']} queries)"
    )


def run_scale_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``csm-bench scale``."""
    try:
        report = asyncio.run(run_scale(args, argv))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"csm-bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report, argv)
    return 0
