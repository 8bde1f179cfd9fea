"""Write merged ingest batches to the database, one transaction a batch."""

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, case, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.ingest.records import DETAIL_FIELDS, ProcessPatch
from receiver.store.models import boots, containers, events, execs, memexecs, processes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """Rows gathered from many events, merged per key, ready to write."""

    processes: dict[tuple[int, int, bytes], ProcessPatch] = field(default_factory=dict)
    boots: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    containers: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)
    execs: dict[tuple[int, int, bytes, int], dict[str, Any]] = field(
        default_factory=dict
    )
    memexecs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)

    def add_process(self, patch: ProcessPatch) -> None:
        """Merge a process patch into the batch."""
        existing = self.processes.get(patch.key)
        if existing is None:
            self.processes[patch.key] = patch
        else:
            existing.merge(patch)

    def add_boot(self, vm_id: int, boot: int, seen_at: int) -> None:
        """Note that ``boot`` of ``vm_id`` was seen at ``seen_at``."""
        first, last = self.boots.get((vm_id, boot), (seen_at, seen_at))
        self.boots[(vm_id, boot)] = (min(first, seen_at), max(last, seen_at))

    def note_container(self, vm_id: int, boot: int, container_id: int) -> None:
        """Make sure a container seen only through its processes is listed."""
        key = (vm_id, boot, container_id)
        if key not in self.containers:
            row = dict.fromkeys(containers.c.keys())
            row.update(vm_id=vm_id, boot=boot, container_id=container_id)
            self.containers[key] = row

    def add_container(self, row: dict[str, Any]) -> None:
        """Merge container metadata; later reports fill or replace fields."""
        key = (row["vm_id"], row["boot"], row["container_id"])
        existing = self.containers.get(key)
        if existing is None:
            self.containers[key] = dict(row)
        else:
            existing.update({k: v for k, v in row.items() if v is not None})


def _dialect_insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _upsert_processes(
    connection: AsyncConnection, patches: Sequence[ProcessPatch]
) -> None:
    stmt = _dialect_insert(connection, processes)
    new = stmt.excluded
    old = processes.c
    newer_exec = (new.exec_at.is_not(None)) & (
        new.exec_at >= func.coalesce(old.exec_at, 0)
    )
    updates: dict[str, Any] = {
        name: case(
            (newer_exec, getattr(new, name)),
            else_=func.coalesce(getattr(old, name), getattr(new, name)),
        )
        for name in DETAIL_FIELDS
    }
    updates["exec_at"] = case((newer_exec, new.exec_at), else_=old.exec_at)
    updates["exited_at"] = func.coalesce(old.exited_at, new.exited_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["vm_id", "boot", "uuid"], set_=updates
    )
    await connection.execute(stmt, [patch.as_row() for patch in patches])


async def _upsert_boots(connection: AsyncConnection, batch: Batch) -> None:
    rows = [
        {"vm_id": vm_id, "boot": boot, "first_seen": first, "last_seen": last}
        for (vm_id, boot), (first, last) in batch.boots.items()
    ]
    stmt = _dialect_insert(connection, boots)
    stmt = stmt.on_conflict_do_update(
        index_elements=["vm_id", "boot"],
        set_={
            "first_seen": func.min(boots.c.first_seen, stmt.excluded.first_seen)
            if connection.dialect.name == "sqlite"
            else func.least(boots.c.first_seen, stmt.excluded.first_seen),
            "last_seen": func.max(boots.c.last_seen, stmt.excluded.last_seen)
            if connection.dialect.name == "sqlite"
            else func.greatest(boots.c.last_seen, stmt.excluded.last_seen),
        },
    )
    await connection.execute(stmt, rows)


async def _upsert_containers(connection: AsyncConnection, batch: Batch) -> None:
    stmt = _dialect_insert(connection, containers)
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
    stmt = _dialect_insert(connection, table).on_conflict_do_nothing()
    await connection.execute(stmt, list(rows))


# More writes that must commit or fail with the batch (delivery bookkeeping).
AlsoWrite = Callable[[AsyncConnection], Awaitable[None]]


async def write_batch(
    engine: AsyncEngine, batch: Batch, also: AlsoWrite | None = None
) -> None:
    """Write ``batch`` in one transaction, with ``also`` in the same one."""
    async with engine.begin() as connection:
        if also is not None:
            await also(connection)
        if batch.boots:
            await _upsert_boots(connection, batch)
        if batch.processes:
            # A stable key order keeps concurrent writers from deadlocking.
            patches = sorted(batch.processes.values(), key=lambda p: p.key)
            await _upsert_processes(connection, patches)
        if batch.containers:
            await _upsert_containers(connection, batch)
        if batch.execs:
            await _insert_ignoring_duplicates(
                connection, execs, list(batch.execs.values())
            )
        if batch.memexecs:
            await connection.execute(memexecs.insert(), batch.memexecs)
        if batch.events:
            await connection.execute(events.insert(), batch.events)
