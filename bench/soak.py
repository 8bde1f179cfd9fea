"""Soak run: normal and hostile guests against one receiver for a set time.

The receiver runs as its own process (so its memory is measured honestly)
with well-behaved simulated VMs and hostile ones beside them: malformed
frames, slowloris connections, connection churn and a flood. The report
gives the receiver's memory over time, the errors counted per VM and
whether every process of the good VMs was stored.

    csm-bench soak --duration-s 600
"""

import argparse
import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.machine import describe_machine, print_header, rerun_command
from bench.simulate import FleetRun, SimResult, SimTarget, run_fleet
from csm_wire.codec import HEADER
from csm_wire.messages import encode_heartbeat

TOKEN = "soak-token"
GOOD_VMS = ("good-1", "good-2", "good-3")
HOSTILE_VMS = ("bad-frames", "slowloris", "churn", "flood")
SAMPLE_INTERVAL_S = 5.0
DRAIN_TIMEOUT_S = 300.0
STARTUP_TIMEOUT_S = 30.0
# Malformed inputs the bad-frames VM cycles through, one connection each.
MALFORMED = (
    HEADER.pack(2, 3),
    HEADER.pack(2, 100 * 1024 * 1024),
    HEADER.pack(2, 12) + b"\xff\xff\xff\xff",
    HEADER.pack(77, 9) + b"x",
    HEADER.pack(2, 500) + b"\x00" * 100,
)


class SoakReceiver:
    """``csm-receiver serve`` in a subprocess with the soak's VMs."""

    def __init__(self, work: Path, db: str | None) -> None:
        args = [
            sys.executable,
            "-m",
            "receiver.cli",
            "serve",
            "--no-vsock",
            "--api",
            "127.0.0.1:0",
            "--api-token",
            TOKEN,
            "--data-dir",
            str(work / "var"),
            "--idle-timeout-s",
            "20",
            # Smaller backlog bounds than the defaults, so that a soak of
            # minutes reaches them and shows memory level off.
            "--ingest-vm-max-bytes",
            str(4 << 20),
            "--ingest-total-max-bytes",
            str(32 << 20),
        ]
        if db:
            args += ["--db", db]
        for name in GOOD_VMS + HOSTILE_VMS:
            args += ["--vm", f"{name}=hybrid:{work / name}"]
        self.work = work
        self.log = open(work / "receiver.log", "w+")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(args, stderr=self.log, text=True)
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            self.log.seek(0)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", self.log.read())
            if match:
                return int(match[1])
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the receiver did not start; see " + str(self.log.name))

    def socket(self, vm: str) -> str:
        """The hybrid socket of ``vm``."""
        return str(self.work / f"{vm}_4444")

    def rss_mib(self) -> float:
        """The receiver's resident memory now."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match[1]) / 1024 if match else 0.0

    def stop(self) -> int:
        """SIGTERM and wait."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        self.log.close()
        return code


async def _open(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        await writer.wait_closed()


async def bad_frames(path: str, until: float) -> None:
    """Connect, say something malformed, repeat."""
    index = 0
    while time.monotonic() < until:
        try:
            _, writer = await _open(path)
            writer.write(encode_heartbeat() + MALFORMED[index % len(MALFORMED)])
            await writer.drain()
            await asyncio.sleep(0.2)
            await _close(writer)
        except (ConnectionError, BrokenPipeError):
            pass
        index += 1
        await asyncio.sleep(0.3)


async def slowloris(path: str, until: float, connections: int = 30) -> None:
    """Hold many connections that send one byte every few seconds."""
    writers: list[asyncio.StreamWriter] = []
    while time.monotonic() < until:
        while len(writers) < connections:
            try:
                writers.append((await _open(path))[1])
            except (ConnectionError, FileNotFoundError):
                break
        for writer in list(writers):
            try:
                writer.write(b"\x02")
                await writer.drain()
            except (ConnectionError, BrokenPipeError):
                writers.remove(writer)
                await _close(writer)
        await asyncio.sleep(3.0)
    for writer in writers:
        await _close(writer)


async def churn(path: str, until: float) -> None:
    """Connect, beat once, leave, as fast as the receiver accepts."""
    while time.monotonic() < until:
        try:
            _, writer = await _open(path)
            writer.write(encode_heartbeat())
            await writer.drain()
            await _close(writer)
        except (ConnectionError, BrokenPipeError):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.01)


async def flood(path: str, until: float) -> None:
    """Stream valid events as fast as the socket takes them."""
    target = SimTarget("flood", path.removesuffix("_4444"))
    seed = 1000
    while time.monotonic() < until:
        remaining = until - time.monotonic()
        run = FleetRun(events_per_vm=20_000, seed=seed, hold_s=0.0)
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(run_fleet([target], run), timeout=max(remaining, 1))
        seed += 1


async def _api(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


async def _stored_uuids(http: aiohttp.ClientSession, base: str, vm: str) -> set[str]:
    stored: set[str] = set()
    cursor = None
    while True:
        url = f"{base}/api/v1/vms/{vm}/processes?limit=1000"
        if cursor:
            url += f"&cursor={cursor}"
        page = await _api(http, url)
        stored.update(item["uuid"] for item in page["items"])
        cursor = page["next"]
        if not cursor:
            return stored


async def _queue_depth(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    match = re.search(r"^csm_ingest_queue_depth ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


async def _wait_drained(http: aiohttp.ClientSession, base: str) -> float:
    """Wait until the receiver's queue is empty; return how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        if await _queue_depth(http, base) == 0:
            break
        await asyncio.sleep(0.5)
    # The last batch may still be in its transaction.
    await asyncio.sleep(1.0)
    return round(time.monotonic() - started, 1)


async def _sample_memory(
    receiver: SoakReceiver, until: float, samples: list[tuple[float, float]]
) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        samples.append((round(time.monotonic() - started, 1), receiver.rss_mib()))
        await asyncio.sleep(SAMPLE_INTERVAL_S)


async def run_soak(duration_s: float, db: str | None, rate: float) -> dict[str, Any]:
    """Run the soak and return its report."""
    with tempfile.TemporaryDirectory(prefix="csm-soak-") as work_dir:
        work = Path(work_dir)
        receiver = SoakReceiver(work, db)
        try:
            return await _drive(receiver, duration_s, rate)
        finally:
            code = receiver.stop()
            if code != 0:
                print(f"receiver exited with {code}", file=sys.stderr)


async def _drive(
    receiver: SoakReceiver, duration_s: float, rate: float
) -> dict[str, Any]:
    until = time.monotonic() + duration_s
    samples: list[tuple[float, float]] = []
    hostile: list[Callable[[str, float], Awaitable[None]]] = [
        bad_frames,
        slowloris,
        churn,
        flood,
    ]
    good_targets = [SimTarget(name, str(receiver.work / name)) for name in GOOD_VMS]
    good_run = FleetRun(
        events_per_vm=int(rate * duration_s), rate_per_vm=rate, real_time=True
    )
    tasks: list[asyncio.Task[None]] = [
        asyncio.ensure_future(attack(receiver.socket(name), until))
        for attack, name in zip(hostile, HOSTILE_VMS, strict=True)
    ]
    tasks.append(asyncio.create_task(_sample_memory(receiver, until, samples)))
    results: list[SimResult] = await run_fleet(good_targets, good_run)
    await asyncio.gather(*tasks)
    base = f"http://127.0.0.1:{receiver.port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        drain_s = await _wait_drained(http, base)
        counters = {
            vm: (await _api(http, f"{base}/api/v1/vms/{vm}"))["counters"]
            for vm in GOOD_VMS + HOSTILE_VMS
        }
        missing = {}
        for result in results:
            stored = await _stored_uuids(http, base, result.name)
            sent = {uuid.hex() for uuid in result.uuids}
            missing[result.name] = len(sent - stored)
    alive = receiver.process.poll() is None
    first_half = [rss for t, rss in samples if t <= duration_s / 2]
    second_half = [rss for t, rss in samples if t > duration_s / 2]
    return {
        "duration_s": duration_s,
        "drain_after_load_s": drain_s,
        "receiver_alive": alive,
        "rss_mib": samples,
        "rss_growth_second_half_mib": round(
            (max(second_half) - max(first_half)) if first_half and second_half else 0,
            1,
        ),
        "good_processes_sent": {r.name: len(r.uuids) for r in results},
        "good_processes_missing": missing,
        "complete": all(count == 0 for count in missing.values()),
        "counters": counters,
    }


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``csm-bench soak`` flags."""
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--rate", type=float, default=50.0, help="events/s per good VM")
    parser.add_argument("--json", action="store_true", help="print JSON only")


def run_soak_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the soak, print the report; non-zero if data was lost or it crashed."""
    report = asyncio.run(run_soak(args.duration_s, args.db, args.rate))
    report["machine"] = describe_machine()
    report["rerun"] = rerun_command(argv)
    if args.json:
        print(json.dumps(report))
    else:
        print_header("soak: hostile and normal guests against one receiver", argv)
        print(f"receiver alive at the end: {report['receiver_alive']}")
        print(f"queue drained {report['drain_after_load_s']} s after the load")
        print("receiver RSS over time (s, MiB):", report["rss_mib"])
        print(
            "RSS growth, second half over first (MiB):",
            report["rss_growth_second_half_mib"],
        )
        print(
            "good VMs: processes sent",
            report["good_processes_sent"],
            "missing",
            report["good_processes_missing"],
        )
        for vm, counters in report["counters"].items():
            errors = {k: v for k, v in counters.items() if k != "drops" and v}
            drops = {k: v for k, v in counters["drops"].items() if v}
            print(f"  {vm}: {errors} drops={drops}")
    ok = report["receiver_alive"] and report["complete"]
    return 0 if ok else 1
