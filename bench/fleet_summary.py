"""The fleet summary's latency over a large fleet.

A receiver (host ``bench``) registers its share of the VMs through
``POST /api/v1/vms`` (each opens a hybrid listener); the other hosts' VMs
are written to the database as their receivers would have left them: a
lease, boots, findings and gaps. Then ``GET /api/v1/fleet/summary`` is timed
through the real API, for the whole fleet and for one host.

    python -m bench.fleet_summary [--vms 1000] [--hosts 4] [--db postgresql]
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.databases import DEFAULT_PG_ADMIN_DSN, throwaway_database
from bench.ingest import percentile
from bench.machine import describe_machine
from bench.scale import raise_fd_limit
from receiver.service import Service
from receiver.settings import Settings
from receiver.store.models import (
    boots,
    delivery_gaps,
    findings,
    receivers,
    vm_leases,
    vms,
)

TOKEN = "bench-operator-token"
LOCAL_HOST = "bench"
BOOTS_PER_VM = 2
FINDINGS_PER_VM = 3
GAPS_PER_VM = 2
LEASE_TTL_NS = 3600 * 10**9
SEVERITIES = ("low", "medium", "high")
# One listener socket per local VM, plus what the receiver and client use.
SPARE_FDS = 256


async def seed_remote_vms(
    engine: AsyncEngine, host: str, names: Sequence[str], *, connected: bool = True
) -> list[int]:
    """Write VMs of another host, each with a live lease, boots, findings and
    gaps, in a handful of bulk statements; return their ids."""
    now = time.time_ns()
    async with engine.begin() as connection:
        await connection.execute(
            vms.insert(),
            [
                {
                    "name": name,
                    "host": host,
                    "transport": "cid",
                    "address": f"cid:{index + 3}",
                    "registered": True,
                    "created_at": now,
                }
                for index, name in enumerate(names)
            ],
        )
        rows = await connection.execute(
            select(vms.c.id).where(vms.c.host == host, vms.c.name.in_(names))
        )
        ids = sorted(row.id for row in rows)
        await _seed_rows(connection, host, ids, now, connected)
    return ids


async def _seed_rows(
    connection: Any, host: str, ids: list[int], now: int, connected: bool
) -> None:
    await connection.execute(
        vm_leases.insert(),
        [
            {
                "vm_id": vm_id,
                "host": host,
                "connected": connected,
                "health": "healthy" if connected else "disconnected",
                "protocol": "v2",
                "last_heartbeat": now,
                "renewed_at": now,
                "expires_at": now + LEASE_TTL_NS,
            }
            for vm_id in ids
        ],
    )
    await connection.execute(
        boots.insert(),
        [
            {"vm_id": vm_id, "boot": boot, "first_seen": now, "last_seen": now + boot}
            for vm_id in ids
            for boot in range(1, BOOTS_PER_VM + 1)
        ],
    )
    await connection.execute(
        findings.insert(),
        [
            {
                "vm_id": vm_id,
                "boot": 1,
                "uuid": n.to_bytes(16, "big"),
                "kind": "added_binary_executed",
                "severity": SEVERITIES[n % len(SEVERITIES)],
                "at": now,
                "details": "{}",
                "created_at": now,
            }
            for vm_id in ids
            for n in range(FINDINGS_PER_VM)
        ],
    )
    await connection.execute(
        delivery_gaps.insert(),
        [
            {
                "vm_id": vm_id,
                "boot": 1,
                "cause": "guest_overflow",
                "count": 10,
                "detected_at": now,
                "journal_id": f"{host[:16]}-{vm_id}"[:32],
                "lsn": n,
            }
            for vm_id in ids
            for n in range(GAPS_PER_VM)
        ],
    )


async def seed_receiver(engine: AsyncEngine, host: str) -> None:
    """Write a running receiver of ``host``, as its lease would say."""
    now = time.time_ns()
    async with engine.begin() as connection:
        await connection.execute(
            receivers.insert().values(
                host=host,
                instance=f"{host}-instance",
                api="127.0.0.1:0",
                started_at=now,
                heartbeat_at=now,
                expires_at=now + LEASE_TTL_NS,
            )
        )


async def _seed_other_hosts(engine: AsyncEngine, count: int, hosts: int) -> None:
    per_host, extra = divmod(count, hosts)
    for h in range(1, hosts + 1):
        host = f"hv-{h:02d}"
        size = per_host + (1 if h <= extra else 0)
        await seed_receiver(engine, host)
        await seed_remote_vms(engine, host, [f"vm-{h}-{n:04d}" for n in range(size)])


def _settings(db: str, root: Path) -> Settings:
    return Settings(
        data_dir=root / "var",
        db=db,
        api="127.0.0.1:0",
        no_vsock=True,
        host=LOCAL_HOST,
        api_token=TOKEN,
        log_level="WARNING",
    )


async def _register_local(
    http: aiohttp.ClientSession, base: str, root: Path, count: int
) -> None:
    for n in range(count):
        body = {"name": f"local-{n:04d}", "uds_path": str(root / f"l{n}.vsock")}
        async with http.post(f"{base}/api/v1/vms", json=body) as reply:
            assert reply.status == 201, await reply.text()


async def _time(http: aiohttp.ClientSession, url: str, requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    raw = b""
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url) as reply:
            raw = await reply.read()
            assert reply.status == 200, raw[:200]
        latencies.append(time.perf_counter() - started)
    # Decoded once: the client shares this process, and its garbage would
    # add collector pauses to the receiver's figures.
    size = len(raw)
    items = len(json.loads(raw)["items"])
    return {
        "items": items,
        "bytes": size,
        "p50_ms": round((percentile(latencies, 0.5) or 0) * 1000, 1),
        "p99_ms": round((percentile(latencies, 0.99) or 0) * 1000, 1),
    }


async def measure(
    kind: str, vm_count: int, hosts: int, requests: int
) -> dict[str, Any]:
    """Build the fleet on a throwaway database and time the summary."""
    local = vm_count // hosts
    raise_fd_limit(local + SPARE_FDS)
    async with throwaway_database(kind, DEFAULT_PG_ADMIN_DSN) as database:
        with tempfile.TemporaryDirectory(prefix="csm-fleet-summary-") as tmp:
            root = Path(tmp)
            service = Service(_settings(database.url, root))
            await service.start()
            try:
                base = f"http://127.0.0.1:{service.api_port}"
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with aiohttp.ClientSession(headers=headers) as http:
                    await _register_local(http, base, root, local)
                    await _seed_other_hosts(service.engine, vm_count - local, hosts - 1)
                    summary = f"{base}/api/v1/fleet/summary?limit=1000"
                    whole = await _time(http, summary, requests)
                    one_host = await _time(http, summary + "&host=hv-01", requests)
            finally:
                await service.stop()
    return {
        "benchmark": "fleet_summary",
        "database": kind,
        "machine": describe_machine(),
        "vms": vm_count,
        "hosts": hosts,
        "local_vms": local,
        "requests": requests,
        "whole_fleet": whole,
        "one_host": one_host,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_summary")
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=4, help="at least 2")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args(argv)
    if args.hosts < 2 or args.vms < args.hosts or args.requests < 1:
        parser.error("need --hosts >= 2, --vms >= --hosts and --requests >= 1")
    report = asyncio.run(measure(args.db, args.vms, args.hosts, args.requests))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
