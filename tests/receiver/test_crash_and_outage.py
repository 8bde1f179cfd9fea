"""Nothing accepted is lost: the receiver killed mid-stream, and the
database stopped mid-stream, with ten (or five) v2 guests streaming."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.v2_guest import V2TestGuest, sample_event
from receiver.store.models import events, vms
from tests.conftest import (
    TEST_TOKEN,
    _create_pg_database,
    _drop_pg_database,
    make_settings,
    start_receiver,
    stop_receiver,
)
from tests.receiver.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
PG_CLUSTER = ("15", "main")


def machine_id(index: int) -> int:
    return 0x5EED0000 + index


async def produce(
    guest: V2TestGuest, count: int, until: asyncio.Event, burst: int = 10
) -> None:
    """Produce at least ``count`` events, ``burst`` about 100 times a second
    once the guest is connected, and go on until ``until`` is set."""
    await asyncio.wait_for(guest.connected.wait(), 30)
    n = 0
    while n < count or not until.is_set():
        n += 1
        guest.produce(sample_event(guest.machine_id, n))
        if n % burst == 0:
            await asyncio.sleep(0.01)


def produced(guests: list[V2TestGuest]) -> dict[str, tuple[int, int]]:
    """What the guests produced, as :func:`counts_by_vm` should find it."""
    return {
        f"vm-{i}": (g.stream.next_seq - 1, g.stream.next_seq - 1)
        for i, g in enumerate(guests)
    }


async def counts_by_vm(db_url: str) -> dict[str, tuple[int, int]]:
    """Per VM name: stored events and distinct event UUIDs."""
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(
                    vms.c.name,
                    func.count(events.c.id),
                    func.count(func.distinct(events.c.uuid)),
                )
                .join(events, events.c.vm_id == vms.c.id)
                .group_by(vms.c.name)
            )
            return {row[0]: (int(row[1]), int(row[2])) for row in rows}
    finally:
        await engine.dispose()


class ReceiverProcess:
    """``csm-receiver serve`` as a child process of the test."""

    def __init__(
        self, tmp_path: Path, db_url: str, names: list[str], *extra: str
    ) -> None:
        self.sockets = {name: tmp_path / f"{name}.vsock_4444" for name in names}
        self.argv = [
            sys.executable,
            "-m",
            "receiver.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "var"),
            "--db",
            db_url,
            "--api",
            "127.0.0.1:0",
            "--no-vsock",
            "--host",
            "test-host",
            "--api-token",
            TEST_TOKEN,
            "--log-level",
            "INFO",
            *extra,
        ]
        for name in names:
            self.argv += ["--vm", f"{name}=hybrid:{tmp_path / f'{name}.vsock'}"]
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "receiver.log"

    async def start(self) -> None:
        for path in self.sockets.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with self.log.open("ab") as log:
            # Popen returns at once; the receiver runs beside the test loop.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        await wait_for(
            lambda: all(p.exists() for p in self.sockets.values()),
            "receiver listening",
            timeout_s=30,
        )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
async def receiver_process(
    db_url: str, tmp_path: Path
) -> AsyncIterator[ReceiverProcess]:
    names = [f"vm-{i}" for i in range(10)]
    process = ReceiverProcess(tmp_path, db_url, names)
    try:
        yield process
    finally:
        process.ensure_stopped()


async def stream_through_a_sigkill(
    receiver: ReceiverProcess, events_per_guest: int
) -> list[V2TestGuest]:
    """Start the receiver and a v2 guest on each of its sockets, SIGKILL it
    while every guest streams, start it again, let the guests finish and
    stop the receiver cleanly; return the guests."""
    await receiver.start()
    guests = [
        V2TestGuest(path, machine_id(i))
        for i, path in enumerate(receiver.sockets.values())
    ]
    for guest in guests:
        await guest.start()
    restarted = asyncio.Event()
    producers = [
        asyncio.create_task(produce(g, events_per_guest, restarted)) for g in guests
    ]
    await wait_for(
        lambda: all(g.stream.acked_seq > 100 for g in guests), "streaming", 30
    )
    receiver.kill()
    await asyncio.sleep(0.5)
    await receiver.start()
    await wait_for(lambda: all(g.connected.is_set() for g in guests), "back", 30)
    restarted.set()
    await asyncio.gather(*producers)
    for guest in guests:
        await guest.wait_acked(timeout_s=120)
    for guest in guests:
        await guest.stop()
    assert receiver.terminate() == 0
    return guests


async def test_sigkill_mid_stream_stores_every_event_once(
    receiver_process: ReceiverProcess, db_url: str
) -> None:
    guests = await stream_through_a_sigkill(receiver_process, 1500)
    counts = await counts_by_vm(db_url)
    assert counts == produced(guests)
    assert all(g.connections >= 2 for g in guests)


def pg_ctl(action: str) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            *PG_CLUSTER,
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        timeout=60,
    )


def pg_is_ready() -> bool:
    return (
        subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10
        ).returncode
        == 0
    )


async def test_postgres_outage_loses_nothing(tmp_path: Path) -> None:
    name, db_url = await _create_pg_database()
    settings = make_settings(
        tmp_path, db_url, [f"vm-{i}" for i in range(5)], batch_interval_s=0.05
    )
    running = await start_receiver(settings)
    guests = [
        V2TestGuest(path, machine_id(i))
        for i, path in enumerate(running.sockets.values())
    ]
    try:
        for guest in guests:
            await guest.start()
        # The guests keep producing through the outage and after it.
        resumed = asyncio.Event()
        producers = [
            asyncio.create_task(produce(g, 1000, resumed, burst=3)) for g in guests
        ]
        await wait_for(lambda: running.service.ingestor.events_written > 200, "ingest")
        stored_before = running.service.ingestor.events_written
        try:
            pg_ctl("stop")
            produced_before = sum(g.stream.next_seq for g in guests)
            await asyncio.sleep(30)
            assert sum(g.stream.next_seq for g in guests) > produced_before
            # While it was down the journal held what the guests sent.
            assert running.service.journal.size_bytes > 0
        finally:
            pg_ctl("start")
            for _ in range(60):
                if pg_is_ready():
                    break
                await asyncio.sleep(0.5)
        stored_during = running.service.ingestor.events_written
        await wait_for(
            lambda: running.service.ingestor.events_written > stored_during,
            "ingest resumed",
            60,
        )
        resumed.set()
        await asyncio.gather(*producers)
        for guest in guests:
            await guest.wait_acked(timeout_s=120)
        await running.settle(timeout_s=120)
        journal = running.service.journal
        await wait_for(lambda: journal.size_bytes == 0, "journal drained", 60)
        assert running.service.ingestor.events_written > stored_before
    finally:
        for guest in guests:
            await guest.stop()
        await stop_receiver(running)
        if not pg_is_ready():
            pg_ctl("start")
    try:
        counts = await counts_by_vm(db_url)
        assert counts == produced(guests)
    finally:
        await _drop_pg_database(name)
