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
            await connection.execute(
                select(vms.c.id).where(vms.c.host == host, vms.c.name == spec.name)
            )
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
