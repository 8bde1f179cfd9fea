"""Findings in the store: deduplicated writes, lookups detection needs, and
the keyset-paginated list behind the API."""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.models import containers, findings, processes, vms

FindingKey = tuple[int, int, bytes, str]


@dataclass(frozen=True, slots=True)
class FindingFilter:
    """The filters of the findings list."""

    vm_id: int | None = None
    kind: str | None = None
    since: int | None = None


def decode_details(raw: str) -> dict[str, Any]:
    """The details column back as JSON data."""
    details = json.loads(raw)
    return details if isinstance(details, dict) else {"value": details}


async def insert_findings(
    engine: AsyncEngine, rows: Sequence[dict[str, Any]]
) -> dict[FindingKey, int]:
    """Insert rows not stored yet; return the ids of the new ones by key."""
    if not rows:
        return {}
    created_at = time.time_ns()
    values = [
        {**row, "details": json.dumps(row["details"]), "created_at": created_at}
        for row in rows
    ]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(findings)
        .on_conflict_do_nothing(index_elements=["vm_id", "boot", "uuid", "kind"])
        .returning(
            findings.c.id,
            findings.c.vm_id,
            findings.c.boot,
            findings.c.uuid,
            findings.c.kind,
        )
    )
    async with engine.begin() as connection:
        result = await connection.execute(stmt, values)
        inserted = result.all()
    return {(r.vm_id, r.boot, r.uuid, r.kind): r.id for r in inserted}


async def fetch_finding_ids(
    engine: AsyncEngine, keys: Sequence[FindingKey]
) -> dict[FindingKey, int]:
    """The ids of stored findings by key (those not stored are left out)."""
    if not keys:
        return {}
    c = findings.c
    query = select(c.id, c.vm_id, c.boot, c.uuid, c.kind).where(
        tuple_(c.vm_id, c.boot, c.uuid, c.kind).in_(list(keys))
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {(r.vm_id, r.boot, r.uuid, r.kind): r.id for r in rows}


async def fetch_process_binary(
    engine: AsyncEngine, vm_id: int, boot: int, uuid: bytes
) -> bytes | None:
    """The stored binary of one process, None if unknown."""
    c = processes.c
    query = select(c.binary).where(c.vm_id == vm_id, c.boot == boot, c.uuid == uuid)
    async with engine.connect() as connection:
        binary: bytes | None = (await connection.execute(query)).scalar()
    return binary


async def fetch_container(
    engine: AsyncEngine, vm_id: int, boot: int, container_id: int
) -> Row[Any] | None:
    """One container's stored metadata."""
    c = containers.c
    query = select(containers).where(
        c.vm_id == vm_id, c.boot == boot, c.container_id == container_id
    )
    async with engine.connect() as connection:
        return (await connection.execute(query)).first()


# Keys per query: far below the bound-parameter limits of both databases.
SESSION_KEYS_PER_QUERY = 500


async def sessions_with_finding(
    engine: AsyncEngine, keys: Sequence[tuple[int, int, int]], kind: str
) -> set[tuple[int, int, int]]:
    """The exec sessions among ``keys`` (vm_id, boot, id) with a ``kind`` finding."""
    c = findings.c
    key = tuple_(c.vm_id, c.boot, c.exec_session_id)
    found: set[tuple[int, int, int]] = set()
    async with engine.connect() as connection:
        for start in range(0, len(keys), SESSION_KEYS_PER_QUERY):
            chunk = keys[start : start + SESSION_KEYS_PER_QUERY]
            query = (
                select(c.vm_id, c.boot, c.exec_session_id)
                .where(c.kind == kind, key.in_(chunk))
                .distinct()
            )
            rows = await connection.execute(query)
            found.update((row.vm_id, row.boot, row.exec_session_id) for row in rows)
    return found


async def fetch_findings(
    engine: AsyncEngine,
    filters: FindingFilter,
    after: tuple[int, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A page of findings with their VM's name, ordered by (at, id)."""
    c = findings.c
    query = select(findings, vms.c.name.label("vm_name")).join(vms, vms.c.id == c.vm_id)
    if filters.vm_id is not None:
        query = query.where(c.vm_id == filters.vm_id)
    if filters.kind is not None:
        query = query.where(c.kind == filters.kind)
    if filters.since is not None:
        query = query.where(c.at >= filters.since)
    if after is not None:
        query = query.where(tuple_(c.at, c.id) > after)
    query = query.order_by(c.at, c.id).limit(limit)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()
