"""Read queries across every host sharing the database."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.models import processes, vms
from receiver.store.queries import (
    ProcessFilter,
    filter_processes,
    process_columns,
)


async def fetch_fleet_processes(
    engine: AsyncEngine,
    *,
    host: str | None,
    vm: str | None,
    filters: ProcessFilter,
    after: tuple[int, int, int, bytes] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A page of processes of every VM (of ``host``, named ``vm``), ordered by
    (started_at, vm_id, boot, uuid), each with its VM's name and host."""
    c = processes.c
    query: Select[Any] = (
        select(
            *process_columns(),
            c.vm_id,
            vms.c.name.label("vm_name"),
            vms.c.host.label("vm_host"),
        )
        .join(vms, vms.c.id == c.vm_id)
        .where(vms.c.deleted_at.is_(None))
    )
    if host is not None:
        query = query.where(vms.c.host == host)
    if vm is not None:
        query = query.where(vms.c.name == vm)
    query = filter_processes(query, filters, engine.dialect.name)
    if after is not None:
        query = query.where(tuple_(c.started_at, c.vm_id, c.boot, c.uuid) > after)
    query = query.order_by(c.started_at, c.vm_id, c.boot, c.uuid).limit(limit)
    async with engine.connect() as connection:
        rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
    return rows
