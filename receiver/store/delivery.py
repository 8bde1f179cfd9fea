"""Delivery bookkeeping in the store: journal progress, v2 sequences, gaps."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Bookkeeping:
    """What one batch makes durable, written in the batch's transaction."""

    journal_id: str
    # Per VM: the highest journal LSN the batch stores.
    applied: Mapping[int, int]
    # Per (vm, boot): the highest v2 sequence the batch stores or explains.
    sequences: Mapping[tuple[int, int], int]
    gaps: Sequence[dict[str, Any]]
    now: int

    async def on_sqlalchemy(self, connection: AsyncConnection) -> None:
        """Write through SQLAlchemy (SQLite and the generic path)."""
        if self.applied:
            stmt = _insert(connection, journal_applied)
            stmt = stmt.on_conflict_do_update(
                index_elements=["journal_id", "vm_id"],
                set_={
                    "lsn": _greatest(
                        connection, journal_applied.c.lsn, stmt.excluded.lsn
                    )
                },
            )
            await connection.execute(stmt, self._applied_rows())
        if self.sequences:
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
            await connection.execute(stmt, self._sequence_rows())
        if self.gaps:
            stmt = _insert(connection, delivery_gaps).on_conflict_do_nothing()
            await connection.execute(stmt, list(self.gaps))

    async def on_asyncpg(self, raw: Any) -> None:
        """Write through the raw asyncpg connection of the COPY path."""
        if self.applied:
            await raw.executemany(
                PG_APPLIED_UPSERT,
                [(r["journal_id"], r["vm_id"], r["lsn"]) for r in self._applied_rows()],
            )
        if self.sequences:
            await raw.executemany(
                PG_SEQUENCE_UPSERT,
                [
                    (r["vm_id"], r["boot"], r["stored_seq"], r["updated_at"])
                    for r in self._sequence_rows()
                ],
            )
        if self.gaps:
            await raw.executemany(
                PG_GAP_INSERT, [tuple(g[c] for c in GAP_COLUMNS) for g in self.gaps]
            )

    def _applied_rows(self) -> list[dict[str, Any]]:
        return [
            {"journal_id": self.journal_id, "vm_id": vm_id, "lsn": lsn}
            for vm_id, lsn in sorted(self.applied.items())
        ]

    def _sequence_rows(self) -> list[dict[str, Any]]:
        return [
            {"vm_id": vm_id, "boot": boot, "stored_seq": seq, "updated_at": self.now}
            for (vm_id, boot), seq in sorted(self.sequences.items())
        ]


GAP_COLUMNS = tuple(c.name for c in delivery_gaps.c if c.name != "id")
PG_APPLIED_UPSERT = (
    "INSERT INTO journal_applied (journal_id, vm_id, lsn) VALUES ($1, $2, $3) "
    "ON CONFLICT (journal_id, vm_id) "
    "DO UPDATE SET lsn = GREATEST(journal_applied.lsn, EXCLUDED.lsn)"
)
PG_SEQUENCE_UPSERT = (
    "INSERT INTO delivery_sequences (vm_id, boot, stored_seq, updated_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (vm_id, boot) DO UPDATE SET "
    "stored_seq = GREATEST(delivery_sequences.stored_seq, EXCLUDED.stored_seq), "
    "updated_at = EXCLUDED.updated_at"
)
PG_GAP_INSERT = (
    "INSERT INTO delivery_gaps ({}) VALUES ({}) ON CONFLICT DO NOTHING".format(
        ", ".join(GAP_COLUMNS), ", ".join(f"${i + 1}" for i in range(len(GAP_COLUMNS)))
    )
)


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
