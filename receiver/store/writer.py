"""Write merged ingest batches to the database, one transaction a batch.

PostgreSQL takes the COPY path of :mod:`receiver.store.pg_copy`; SQLite
takes multi-row statements here. Both merge processes by one rule,
:func:`receiver.store.batch.process_merge_updates`.
"""

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Table, func
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.ingest.records import ProcessPatch
from receiver.store.batch import EVENT_COLUMNS, Batch, process_merge_updates
from receiver.store.models import boots, containers, events, execs, memexecs, processes
from receiver.store.pg_copy import copy_batch

__all__ = ["Batch", "write_batch"]

log = logging.getLogger(__name__)

_EVENTS_INSERT = "INSERT INTO {} ({}) VALUES ({})".format(
    events.name, ", ".join(EVENT_COLUMNS), ", ".join("?" * len(EVENT_COLUMNS))
)


async def _upsert_processes(
    connection: AsyncConnection, patches: Sequence[ProcessPatch]
) -> None:
    stmt = sqlite.insert(processes)
    stmt = stmt.on_conflict_do_update(
        index_elements=["vm_id", "boot", "uuid"],
        set_=process_merge_updates(stmt.excluded),
    )
    await connection.execute(stmt, [patch.as_row() for patch in patches])


async def _upsert_boots(connection: AsyncConnection, batch: Batch) -> None:
    rows = [
        {"vm_id": vm_id, "boot": boot, "first_seen": first, "last_seen": last}
        for (vm_id, boot), (first, last) in batch.boots.items()
    ]
    stmt = sqlite.insert(boots)
    stmt = stmt.on_conflict_do_update(
        index_elements=["vm_id", "boot"],
        set_={
            "first_seen": func.min(boots.c.first_seen, stmt.excluded.first_seen),
            "last_seen": func.max(boots.c.last_seen, stmt.excluded.last_seen),
        },
    )
    await connection.execute(stmt, rows)


async def _upsert_containers(connection: AsyncConnection, batch: Batch) -> None:
    stmt = sqlite.insert(containers)
    columns = [c.name for c in containers.c if not c.primary_key]
    stmt = stmt.on_conflict_do_update(
        index_elements=["vm_id", "boot", "container_id"],
        set_={
            name: func.coalesce(getattr(stmt.excluded, name), containers.c[name])
            for name in columns
        },
    )
    await connection.execute(stmt, list(batch.containers.values()))


async def _insert_ignoring_duplicates(
    connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    stmt = sqlite.insert(table).on_conflict_do_nothing()
    await connection.execute(stmt, list(rows))


class AlsoWrite(Protocol):
    """More writes that must commit or fail with the batch (bookkeeping)."""

    async def on_sqlalchemy(self, connection: AsyncConnection) -> None:
        """Write through SQLAlchemy (SQLite)."""

    async def on_asyncpg(self, raw: Any) -> None:
        """Write through the raw connection of the COPY path (PostgreSQL)."""


async def write_batch(
    engine: AsyncEngine, batch: Batch, also: AlsoWrite | None = None
) -> None:
    """Write ``batch`` in one transaction, with ``also`` in the same one."""
    if engine.dialect.name == "postgresql":
        await copy_batch(engine, batch, also.on_asyncpg if also else None)
        return
    async with engine.begin() as connection:
        if also is not None:
            await also.on_sqlalchemy(connection)
        if batch.boots:
            await _upsert_boots(connection, batch)
        if batch.processes:
            await _upsert_processes(connection, batch.sorted_patches())
        if batch.containers:
            await _upsert_containers(connection, batch)
        if batch.execs:
            await _insert_ignoring_duplicates(
                connection, execs, list(batch.execs.values())
            )
        if batch.memexecs:
            await connection.execute(memexecs.insert(), batch.memexecs)
        if batch.events:
            await connection.exec_driver_sql(_EVENTS_INSERT, batch.events)
