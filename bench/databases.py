"""Throwaway databases for benchmarks: a fresh PostgreSQL database or
SQLite file per run, migrated to the latest revision."""

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no stubs

DEFAULT_PG_ADMIN_DSN = os.environ.get(
    "CSM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    """A database made for one benchmark run."""

    kind: str  # "postgresql" or "sqlite"
    url: str  # SQLAlchemy URL
    dsn: str  # asyncpg DSN or SQLite file path


def pg_dsn(admin_dsn: str, name: str) -> str:
    """The DSN of database ``name`` on the admin DSN's server."""
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def sqlalchemy_url(dsn: str) -> str:
    """The asyncpg SQLAlchemy URL of a libpq-style DSN."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def create_pg_database(admin_dsn: str, name: str) -> BenchDatabase:
    """Create (replacing) database ``name``."""
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = pg_dsn(admin_dsn, name)
    return BenchDatabase("postgresql", sqlalchemy_url(dsn), dsn)


async def drop_pg_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists."""
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def throwaway_database(kind: str, admin_dsn: str) -> AsyncIterator[BenchDatabase]:
    """A fresh, empty database of ``kind``, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="csm-bench-") as directory:
            path = Path(directory) / "csm.db"
            yield BenchDatabase("sqlite", f"sqlite+aiosqlite:///{path}", str(path))
        return
    name = f"csm_bench_{uuid.uuid4().hex[:10]}"
    database = await create_pg_database(admin_dsn, name)
    try:
        yield database
    finally:
        await drop_pg_database(admin_dsn, name)


async def pg_server_version(dsn: str) -> str:
    """The server's version string."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()
