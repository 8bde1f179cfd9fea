"""What the exporter reads: stored events and findings after a cursor, and
the durable cursors themselves.

Each receiver exports the rows of the VMs on its own host. Its ingest writes
one batch at a time, so within one host the ids of committed rows only grow
and an id cursor never skips a row.
"""

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.fleet.upsert import upsert
from receiver.store.codec import u64_from_db
from receiver.store.models import events, export_cursors, findings, vms


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One message to publish: its dedupe id, subject parts and body."""

    position: int
    msg_id: str
    stream: str  # "events" or "findings"
    host: str
    vm: str
    kind: str
    body: dict[str, Any]


def _hex_or_none(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _event_item(row: Row[Any]) -> ExportItem:
    body = {
        "id": row.id,
        "host": row.host,
        "vm": row.name,
        "boot": f"{row.boot:08x}",
        "kind": row.kind,
        "at": row.at,
        "received_at": row.received_at,
        "uuid": _hex_or_none(row.uuid),
        "payload": base64.b64encode(row.payload).decode("ascii"),
    }
    return ExportItem(
        row.id, f"event-{row.id}", "events", row.host, row.name, row.kind, body
    )


def _finding_item(row: Row[Any]) -> ExportItem:
    body = {
        "id": row.id,
        "host": row.host,
        "vm": row.name,
        "boot": f"{row.boot:08x}",
        "process_uuid": row.uuid.hex(),
        "kind": row.kind,
        "severity": row.severity,
        "at": row.at,
        "container_id": u64_from_db(row.container_id) if row.container_id else 0,
        "exec_session_id": u64_from_db(row.exec_session_id)
        if row.exec_session_id
        else 0,
        "details": json.loads(row.details),
        "created_at": row.created_at,
    }
    return ExportItem(
        row.id, f"finding-{row.id}", "findings", row.host, row.name, row.kind, body
    )


SOURCES: dict[str, tuple[Table, Any]] = {
    "events": (events, _event_item),
    "findings": (findings, _finding_item),
}


async def read_after(
    engine: AsyncEngine, stream: str, host: str, after: int, limit: int
) -> list[ExportItem]:
    """Up to ``limit`` rows of ``stream`` ("events" or "findings") from the
    VMs of ``host`` with an id above ``after``, oldest first."""
    table, make_item = SOURCES[stream]
    query = (
        select(table, vms.c.name, vms.c.host)
        .join(vms, vms.c.id == table.c.vm_id)
        .where(vms.c.host == host, table.c.id > after)
        .order_by(table.c.id)
        .limit(limit)
    )
    async with engine.connect() as connection:
        rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
    return [make_item(row) for row in rows]


async def load_cursor(engine: AsyncEngine, name: str) -> int:
    """The saved position of cursor ``name``; 0 (from the start) if new."""
    async with engine.connect() as connection:
        position = (
            await connection.execute(
                select(export_cursors.c.position).where(export_cursors.c.name == name)
            )
        ).scalar()
    return int(position or 0)


async def save_cursor(engine: AsyncEngine, name: str, position: int) -> None:
    """Save cursor ``name`` at ``position``."""
    row = {"name": name, "position": position, "updated_at": time.time_ns()}
    async with engine.begin() as connection:
        await upsert(connection, export_cursors, [row], ["name"])
