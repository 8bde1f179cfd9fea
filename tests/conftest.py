"""Shared fixtures: databases (SQLite and the real PostgreSQL) and a running
receiver with hybrid-vsock VMs, driven through its real app factory."""

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.service import Service
from receiver.settings import Settings, VmSpec
from receiver.store.engine import create_engine, migrate

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
if not VECTORS.exists():
    VECTORS = Path(os.environ.get("CSM_VECTORS", "/work/shared/vectors"))

PG_ADMIN_DSN = os.environ.get(
    "CSM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
# Under CI a missing PostgreSQL is a failure, not a skip.
REQUIRE_PG = os.environ.get("CSM_REQUIRE_PG") == "1"
TEST_TOKEN = "test-operator-token"


def read_vector(name: str) -> bytes:
    """The bytes of a recorded guest stream from the shared vectors."""
    return (VECTORS / name).read_bytes()


async def _create_pg_database() -> tuple[str, str]:
    name = f"csm_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {PG_ADMIN_DSN} is unreachable: {exc}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "")
    return name, f"postgresql+asyncpg://{base}/{name}"


async def _drop_pg_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'csm.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database of each kind, migrated to the head."""
    engine = create_engine(db_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database, for tests where the engine does not matter."""
    return f"sqlite+aiosqlite:///{tmp_path / 'csm.db'}"


@dataclass
class RunningReceiver:
    """A started receiver service and how to reach it."""

    service: Service
    sockets: dict[str, Path]
    api_url: str
    token: str = TEST_TOKEN
    _http: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def http(self) -> aiohttp.ClientSession:
        """An HTTP client that sends the operator token."""
        assert self._http is not None
        return self._http

    async def get(self, path: str, **params: Any) -> Any:
        """GET an API path and return its JSON, asserting a 200."""
        async with self.http.get(self.api_url + path, params=params) as response:
            body = await response.json(content_type=None)
            assert response.status == 200, body
            return body

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until every accepted event is in the store."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.service.queue) or self.service.ingestor.busy:
            assert asyncio.get_running_loop().time() < deadline, "ingest stalled"
            await asyncio.sleep(0.02)


def make_settings(
    tmp_path: Path, db_url: str, vm_names: list[str], **extra: Any
) -> Settings:
    """Settings for a test receiver with hybrid VMs under ``tmp_path``."""
    vms = tuple(
        VmSpec(name, "hybrid", uds_path=str(tmp_path / f"{name}.vsock"))
        for name in vm_names
    )
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "db": db_url,
        "api": "127.0.0.1:0",
        "no_vsock": True,
        "vms": vms,
        "host": "test-host",
        "api_token": TEST_TOKEN,
        "batch_interval_s": 0.01,
    }
    values.update(extra)
    return Settings(**values)


async def start_receiver(settings: Settings) -> RunningReceiver:
    """Start a receiver service and an HTTP client for it."""
    service = Service(settings)
    await service.start()
    sockets = {vm.name: Path(f"{vm.uds_path}_{settings.port}") for vm in settings.vms}
    running = RunningReceiver(service, sockets, f"http://127.0.0.1:{service.api_port}")
    running._http = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TEST_TOKEN}"}
    )
    return running


async def stop_receiver(running: RunningReceiver) -> None:
    """Stop the service and close the client."""
    await running.http.close()
    await running.service.stop()


@pytest.fixture
async def receiver(db_url: str, tmp_path: Path) -> AsyncIterator[RunningReceiver]:
    """A receiver on each database kind with hybrid VMs ``vm-a`` and ``vm-b``."""
    running = await start_receiver(make_settings(tmp_path, db_url, ["vm-a", "vm-b"]))
    try:
        yield running
    finally:
        await stop_receiver(running)


class GuestConnection:
    """A fake guest: a Unix stream into a hybrid listener."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> "GuestConnection":
        """Connect to a hybrid listener socket."""
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        return cls(reader, writer)

    async def send(self, data: bytes, chunks: list[int] | None = None) -> None:
        """Send ``data``, optionally cut at the given chunk sizes."""
        if not chunks:
            self.writer.write(data)
            await self.writer.drain()
            return
        offset = 0
        for size in chunks:
            self.writer.write(data[offset : offset + size])
            await self.writer.drain()
            offset += size
            await asyncio.sleep(0)
        if offset < len(data):
            self.writer.write(data[offset:])
            await self.writer.drain()

    async def close(self) -> None:
        """Close the guest's end."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await self.writer.wait_closed()

    def is_closed_by_host(self) -> bool:
        """True once the host has closed the connection."""
        return self.reader.at_eof()
