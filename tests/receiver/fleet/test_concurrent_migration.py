"""Receivers starting together on a fresh PostgreSQL migrate it once."""

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from receiver.service import Service
from receiver.store.engine import create_engine, migrate
from tests.conftest import make_settings


def upgrades_run(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "alembic.runtime.migration" and "Running upgrade" in r.message
    ]


async def test_two_receivers_starting_together_migrate_once(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    services = [
        Service(make_settings(tmp_path / host, pg_url, ["vm"], host=host))
        for host in ("host-a", "host-b")
    ]
    try:
        await asyncio.gather(*(service.start() for service in services))
        upgrades = upgrades_run(caplog)
        # Every revision ran exactly once, by whichever receiver got the lock.
        assert len(upgrades) == len(set(upgrades))
        assert any("-> 0001" in u for u in upgrades)
        assert any("-> 0002_fleet" in u for u in upgrades)
        async with services[0].engine.connect() as connection:
            vms = (
                await connection.execute(text("SELECT host, name FROM vms ORDER BY 1"))
            ).all()
        assert [tuple(row) for row in vms] == [("host-a", "vm"), ("host-b", "vm")]
    finally:
        for service in services:
            await service.stop()


async def test_many_concurrent_migrations_leave_one_schema(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alembic.runtime.migration")
    engines = [create_engine(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        upgrades = upgrades_run(caplog)
        assert len(upgrades) == len(set(upgrades))
        async with engines[0].connect() as connection:
            versions = (
                await connection.execute(
                    text("SELECT version_num FROM alembic_version")
                )
            ).scalars()
            kind = (
                await connection.execute(
                    text("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
                )
            ).scalar()
        # One head: the merge of the revisions made side by side.
        assert set(versions) == {"0006_gap_keys"}
        assert kind == "p"  # partitioned
    finally:
        for engine in engines:
            await engine.dispose()
