"""Time partitions of the append-mostly tables, and retention.

On PostgreSQL ``events``, ``execs`` and ``memexecs`` are range partitioned
by time, one partition a UTC day, plus a DEFAULT partition that catches
anything outside them (a guest's clock can say anything). Receivers create
the partitions ahead of time; retention drops whole partitions that ended
before the cutoff and deletes the old rows of the DEFAULT partition. On
SQLite the same tables stay plain and retention deletes by time. Boots last
seen before the cutoff go too, with their processes, containers and
findings, and so do delivery gaps detected before it.

Several receivers may maintain one database: they take turns on an
advisory lock.
"""

import datetime
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# Table -> the column it is partitioned by (nanoseconds since the epoch).
PARTITIONED_TABLES = {"events": "received_at", "execs": "at", "memexecs": "at"}
# What belongs to one boot and goes with it once the boot ended long ago.
BOOT_TABLES = ("processes", "containers", "findings")
DAY_NS = 86_400 * 10**9
MAINTENANCE_LOCK_KEY = 0x43534D31
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: [lower, upper) in nanoseconds; DEFAULT has no bounds."""

    table: str
    name: str
    lower: int | None
    upper: int | None


@dataclass(slots=True)
class RetentionReport:
    """What one retention pass removed."""

    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    ended_boots: int = 0


def day_start(at_ns: int) -> int:
    """The start of the UTC day containing ``at_ns``."""
    return at_ns - at_ns % DAY_NS


def partition_name(table: str, lower_ns: int) -> str:
    """``events_p20261203`` for the day starting at ``lower_ns``."""
    day = datetime.datetime.fromtimestamp(lower_ns // 10**9, datetime.UTC)
    return f"{table}_p{day:%Y%m%d}"


async def _lock(connection: AsyncConnection) -> None:
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MAINTENANCE_LOCK_KEY}
    )


async def _partitions(connection: AsyncConnection, table: str) -> list[Partition]:
    rows = (
        await connection.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass) ORDER BY c.relname"
            ),
            {"table": table},
        )
    ).all()
    found = []
    for row in rows:
        match = _BOUND.search(row.bound or "")
        lower, upper = (int(match[1]), int(match[2])) if match else (None, None)
        found.append(Partition(table, row.relname, lower, upper))
    return found


async def list_partitions(engine: AsyncEngine, table: str) -> list[Partition]:
    """The partitions of ``table`` (empty on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    async with engine.connect() as connection:
        return await _partitions(connection, table)


async def _create_day(
    connection: AsyncConnection, table: str, key: str, lower: int
) -> None:
    name = partition_name(table, lower)
    upper = lower + DAY_NS
    bounds = {"lower": lower, "upper": upper}
    # Rows already caught by DEFAULT move into the new partition first, or
    # attaching it would fail.
    await connection.execute(
        text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
    )
    where = f'"{key}" >= :lower AND "{key}" < :upper'
    moved = await connection.execute(
        text(f"INSERT INTO {name} SELECT * FROM {table}_default WHERE {where}"),
        bounds,
    )
    if moved.rowcount:
        await connection.execute(
            text(f"DELETE FROM {table}_default WHERE {where}"), bounds
        )
        log.info("moved %d rows of %s into %s", moved.rowcount, table, name)
    await connection.execute(
        text(
            f"ALTER TABLE {table} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ({lower}) TO ({upper})"
        )
    )


async def ensure_partitions(
    engine: AsyncEngine, now_ns: int, *, ahead_days: int, behind_days: int = 1
) -> list[str]:
    """Create the daily partitions from ``behind_days`` before ``now_ns`` to
    ``ahead_days`` after it; return the names created."""
    if engine.dialect.name != "postgresql":
        return []
    today = day_start(now_ns)
    wanted = [today + offset * DAY_NS for offset in range(-behind_days, ahead_days + 1)]
    created = []
    async with engine.begin() as connection:
        await _lock(connection)
        for table, key in PARTITIONED_TABLES.items():
            existing = {p.lower for p in await _partitions(connection, table)}
            for lower in wanted:
                if lower not in existing:
                    await _create_day(connection, table, key, lower)
                    created.append(partition_name(table, lower))
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


async def apply_retention(
    engine: AsyncEngine, now_ns: int, retention_days: float
) -> RetentionReport:
    """Remove history older than ``retention_days`` before ``now_ns``:
    whole partitions on PostgreSQL, rows on SQLite."""
    report = RetentionReport()
    if retention_days <= 0:
        return report
    cutoff = now_ns - int(retention_days * DAY_NS)
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as connection:
        if postgres:
            await _lock(connection)
        for table, key in PARTITIONED_TABLES.items():
            if postgres:
                for partition in await _partitions(connection, table):
                    if partition.upper is not None and partition.upper <= cutoff:
                        await connection.execute(text(f"DROP TABLE {partition.name}"))
                        report.dropped.append(partition.name)
                target = f"{table}_default"
            else:
                target = table
            deleted = await connection.execute(
                text(f'DELETE FROM {target} WHERE "{key}" < :cutoff'),
                {"cutoff": cutoff},
            )
            report.deleted_rows += max(deleted.rowcount, 0)
        report.ended_boots = await _forget_ended_boots(connection, cutoff)
        deleted = await connection.execute(
            text("DELETE FROM delivery_gaps WHERE detected_at < :cutoff"),
            {"cutoff": cutoff},
        )
        report.deleted_rows += max(deleted.rowcount, 0)
    if report.dropped or report.deleted_rows or report.ended_boots:
        log.info(
            "retention (%g days) dropped %s, deleted %d rows and %d ended boots",
            retention_days,
            ", ".join(report.dropped) or "no partitions",
            report.deleted_rows,
            report.ended_boots,
        )
    return report


async def _forget_ended_boots(connection: AsyncConnection, cutoff: int) -> int:
    """Delete the boots last seen before ``cutoff`` with their processes,
    containers and findings; return how many boots. A running boot is seen
    with every batch, so only boots that ended (or went silent) go."""
    ended = "SELECT vm_id, boot FROM boots WHERE last_seen < :cutoff"
    for table in BOOT_TABLES:
        await connection.execute(
            text(f"DELETE FROM {table} WHERE (vm_id, boot) IN ({ended})"),
            {"cutoff": cutoff},
        )
    deleted = await connection.execute(
        text("DELETE FROM boots WHERE last_seen < :cutoff"), {"cutoff": cutoff}
    )
    return max(deleted.rowcount, 0)
