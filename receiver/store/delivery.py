"""Delivery bookkeeping in the store: journal progress, v2 sequences, gaps."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.store.models import delivery_gaps, delivery_sequences, journal_applied


def _insert(connection: AsyncConnection, table: Any) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _greatest(connection: AsyncConnection, old: Any, new: Any) -> Any:
    if connection.dialect.name == "postgresql":
        return func.greatest(old, new)
    return func.max(old, new)


async def write_bookkeeping(
    connection: AsyncConnection,
    journal_id: str,
    applied: Mapping[int, int],
    sequences: Mapping[tuple[int, int], int],
    gaps: Sequence[dict[str, Any]],
    now: int,
) -> None:
    """Record, in the batch's transaction, what the batch made durable."""
    if applied:
        stmt = _insert(connection, journal_applied)
        stmt = stmt.on_conflict_do_update(
            index_elements=["journal_id", "vm_id"],
            set_={
                "lsn": _greatest(connection, journal_applied.c.lsn, stmt.excluded.lsn)
            },
        )
        rows = [
            {"journal_id": journal_id, "vm_id": vm_id, "lsn": lsn}
            for vm_id, lsn in sorted(applied.items())
        ]
        await connection.execute(stmt, rows)
    if sequences:
        stmt = _insert(connection, delivery_sequences)
        stmt = stmt.on_conflict_do_update(
            index_elements=["vm_id", "boot"],
            set_={
                "stored_seq": _greatest(
                    connection,
                    delivery_sequences.c.stored_seq,
                    stmt.excluded.stored_seq,
                ),
                "updated_at": stmt.excluded.updated_at,
            },
        )
        rows = [
            {"vm_id": vm_id, "boot": boot, "stored_seq": seq, "updated_at": now}
            for (vm_id, boot), seq in sorted(sequences.items())
        ]
        await connection.execute(stmt, rows)
    if gaps:
        stmt = _insert(connection, delivery_gaps).on_conflict_do_nothing()
        await connection.execute(stmt, list(gaps))


async def load_applied(engine: AsyncEngine, journal_id: str) -> dict[int, int]:
    """How far each VM's records of ``journal_id`` are in the store."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(journal_applied.c.vm_id, journal_applied.c.lsn).where(
                journal_applied.c.journal_id == journal_id
            )
        )
        return {int(row.vm_id): int(row.lsn) for row in rows}


async def load_sequences(engine: AsyncEngine) -> dict[tuple[int, int], int]:
    """The highest stored v2 sequence of every (vm, boot)."""
    async with engine.connect() as connection:
        rows = await connection.execute(select(delivery_sequences))
        return {(int(r.vm_id), int(r.boot)): int(r.stored_seq) for r in rows}


async def fetch_gaps(
    engine: AsyncEngine,
    vm_id: int,
    *,
    boot: int | None = None,
    cause: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> Sequence[Row[Any]]:
    """A VM's gaps, oldest first."""
    query = select(delivery_gaps).where(delivery_gaps.c.vm_id == vm_id)
    if boot is not None:
        query = query.where(delivery_gaps.c.boot == boot)
    if cause is not None:
        query = query.where(delivery_gaps.c.cause == cause)
    if after_id is not None:
        query = query.where(delivery_gaps.c.id > after_id)
    query = query.order_by(delivery_gaps.c.id).limit(limit)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


async def summarize_gaps(engine: AsyncEngine, vm_id: int) -> list[dict[str, Any]]:
    """Per boot and cause: how many gaps, events known lost, gaps of unknown size."""
    gaps = delivery_gaps.c
    query = (
        select(
            gaps.boot,
            gaps.cause,
            func.count().label("gaps"),
            func.coalesce(func.sum(gaps.count), 0).label("events"),
            func.count().filter(gaps.count.is_(None)).label("unknown_size"),
        )
        .where(gaps.vm_id == vm_id)
        .group_by(gaps.boot, gaps.cause)
        .order_by(gaps.boot, gaps.cause)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        {
            "boot": f"{row.boot:08x}",
            "cause": row.cause,
            "gaps": int(row.gaps),
            "events": int(row.events),
            "unknown_size": int(row.unknown_size),
        }
        for row in rows
    ]
