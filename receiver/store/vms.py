"""VM rows: registration and the recorded configuration answers."""

import json
import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.settings import VmSpec
from receiver.store.models import vms


async def upsert_vm(
    engine: AsyncEngine, spec: VmSpec, host: str, *, registered: bool
) -> int:
    """Create or refresh the VM row for ``spec``; return its id."""
    now = time.time_ns()
    async with engine.begin() as connection:
        row = (
            await connection.execute(select(vms.c.id).where(vms.c.name == spec.name))
        ).first()
        values: dict[str, Any] = {
            "host": host,
            "transport": spec.transport,
            "address": spec.address,
            "deleted_at": None,
        }
        if row is not None:
            if registered:
                values["registered"] = True
            await connection.execute(
                update(vms).where(vms.c.id == row.id).values(**values)
            )
            return int(row.id)
        result = await connection.execute(
            vms.insert().values(
                name=spec.name, registered=registered, created_at=now, **values
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


async def record_config_response(
    engine: AsyncEngine, vm_id: int, answer: dict[str, Any]
) -> None:
    """Store the latest configuration answer of a VM."""
    async with engine.begin() as connection:
        await connection.execute(
            update(vms)
            .where(vms.c.id == vm_id)
            .values(
                config_response=json.dumps(answer), config_response_at=time.time_ns()
            )
        )


async def mark_vm_deleted(engine: AsyncEngine, name: str) -> None:
    """Hide a VM from the fleet, keeping its history; no longer reopened."""
    async with engine.begin() as connection:
        await connection.execute(
            update(vms)
            .where(vms.c.name == name)
            .values(deleted_at=time.time_ns(), registered=False)
        )


async def fetch_registered_vms(engine: AsyncEngine, host: str) -> list[VmSpec]:
    """The VMs registered at run time on ``host`` and not deleted since."""
    c = vms.c
    query = (
        select(c.name, c.transport, c.address)
        .where(c.host == host, c.registered.is_(True), c.deleted_at.is_(None))
        .order_by(c.name)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    specs: list[VmSpec] = []
    for row in rows:
        if row.transport == "hybrid":
            specs.append(VmSpec(row.name, "hybrid", uds_path=row.address))
        elif row.transport == "cid" and row.address.startswith("cid:"):
            specs.append(VmSpec(row.name, "cid", cid=int(row.address[4:])))
    return specs
