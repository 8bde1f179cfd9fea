"""Time partitions made ahead of time, and retention by whole partitions."""

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.engine import create_engine, migrate
from receiver.store.models import (
    boots,
    containers,
    delivery_gaps,
    events,
    findings,
    processes,
)
from receiver.store.partitions import (
    DAY_NS,
    apply_retention,
    day_start,
    ensure_partitions,
    list_partitions,
    partition_name,
)

# 2026-12-03 12:00 UTC
NOW = day_start(1_796_299_200 * 10**9) + DAY_NS // 2
TODAY = day_start(NOW)


async def insert_events(engine: AsyncEngine, received: list[int]) -> None:
    rows = [
        {
            "vm_id": 1,
            "boot": 1,
            "kind": "exec",
            "at": at,
            "received_at": at,
            "uuid": None,
            "payload": b"x",
        }
        for at in received
    ]
    async with engine.begin() as connection:
        await connection.execute(events.insert(), rows)


async def stored_times(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        query = select(events.c.received_at).order_by(events.c.received_at)
        return list((await connection.execute(query)).scalars())


async def partition_of(engine: AsyncEngine, received_at: int) -> str:
    async with engine.connect() as connection:
        return str(
            (
                await connection.execute(
                    text(
                        "SELECT tableoid::regclass::text FROM events "
                        "WHERE received_at = :at"
                    ),
                    {"at": received_at},
                )
            ).scalar()
        )


def test_partition_names_are_utc_days() -> None:
    assert partition_name("events", TODAY) == "events_p20261203"
    assert day_start(TODAY + DAY_NS - 1) == TODAY


async def test_partitions_are_made_ahead_and_catch_rows_in_default(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "postgresql":
        assert await ensure_partitions(engine, NOW, ahead_days=3) == []
        return
    ahead = TODAY + 5 * DAY_NS + 7
    await insert_events(engine, [ahead])
    assert await partition_of(engine, ahead) == "events_default"

    created = await ensure_partitions(engine, NOW, ahead_days=5)
    assert "events_p20261208" in created
    assert "memexecs_p20261203" in created and "execs_p20261202" in created
    # The row caught by DEFAULT moved into the day made for it.
    assert await partition_of(engine, ahead) == "events_p20261208"
    assert await ensure_partitions(engine, NOW, ahead_days=5) == []

    await insert_events(engine, [NOW])
    assert await partition_of(engine, NOW) == "events_p20261203"


async def test_retention_drops_old_partitions_and_nothing_newer(
    engine: AsyncEngine,
) -> None:
    postgres = engine.dialect.name == "postgresql"
    await ensure_partitions(engine, NOW, ahead_days=1, behind_days=10)
    ancient = 631_152_000 * 10**9  # 1990, outside every partition
    future = 4_102_444_800 * 10**9  # 2100
    old = [TODAY - 10 * DAY_NS, TODAY - 5 * DAY_NS + 1, TODAY - 4 * DAY_NS]
    kept = [TODAY - 3 * DAY_NS, NOW - 3 * DAY_NS + 1, TODAY - DAY_NS, NOW, future]
    await insert_events(engine, [ancient, *old, *kept])

    report = await apply_retention(engine, NOW, retention_days=3)

    remaining = await stored_times(engine)
    if postgres:
        dropped = {
            partition_name(table, TODAY - days * DAY_NS)
            for table in ("events", "execs", "memexecs")
            for days in range(4, 11)
        }
        assert set(report.dropped) == dropped
        names = {p.name for p in await list_partitions(engine, "events")}
        assert names == {
            "events_default",
            *(partition_name("events", TODAY + d * DAY_NS) for d in range(-3, 2)),
        }
        # The partition holding the cutoff stays whole: rows just older
        # than three days survive until their whole day has aged out.
        assert remaining == [TODAY - 3 * DAY_NS, NOW - 3 * DAY_NS + 1, *kept[2:]]
        assert report.deleted_rows == 1  # the 1990 row in DEFAULT
    else:
        assert report.dropped == []
        assert remaining == [NOW - 3 * DAY_NS + 1, *kept[2:]]
    assert await apply_retention(engine, NOW, retention_days=0) == type(report)()


async def test_ingest_lands_in_todays_partition(pg_url: str) -> None:
    engine = create_engine(pg_url)
    await migrate(engine)
    try:
        await _lands_in_today(engine)
    finally:
        await engine.dispose()


async def _lands_in_today(engine: AsyncEngine) -> None:
    await ensure_partitions(engine, NOW, ahead_days=1)
    await insert_events(engine, [NOW, NOW + 1])
    async with engine.connect() as connection:
        count = (
            await connection.execute(text("SELECT count(*) FROM events_p20261203"))
        ).scalar()
        total = (
            await connection.execute(select(func.count()).select_from(events))
        ).scalar()
    assert count == total == 2


async def insert_boot(engine: AsyncEngine, boot: int, last_seen: int) -> None:
    """One boot of VM 1 with a process, a container, a finding and a gap."""
    async with engine.begin() as connection:
        await connection.execute(
            boots.insert(),
            [{"vm_id": 1, "boot": boot, "first_seen": 0, "last_seen": last_seen}],
        )
        await connection.execute(
            processes.insert(),
            [{"vm_id": 1, "boot": boot, "uuid": b"p", "pid": 1, "started_at": 0}],
        )
        await connection.execute(
            containers.insert(), [{"vm_id": 1, "boot": boot, "container_id": 7}]
        )
        await connection.execute(
            findings.insert(),
            [
                {
                    "vm_id": 1,
                    "boot": boot,
                    "uuid": b"p",
                    "kind": "reverse_shell",
                    "severity": "critical",
                    "at": last_seen,
                    "details": "{}",
                    "created_at": last_seen,
                }
            ],
        )
        await connection.execute(
            delivery_gaps.insert(),
            [
                {
                    "vm_id": 1,
                    "boot": boot,
                    "cause": "v1_reconnect",
                    "detected_at": last_seen,
                    "journal_id": "j",
                    "lsn": boot,
                }
            ],
        )


async def test_retention_forgets_boots_that_ended_before_the_cutoff(
    engine: AsyncEngine,
) -> None:
    await insert_boot(engine, 1, NOW - 10 * DAY_NS)
    await insert_boot(engine, 2, NOW - DAY_NS)

    report = await apply_retention(engine, NOW, retention_days=3)

    assert report.ended_boots == 1
    async with engine.connect() as connection:
        for table in (boots, processes, containers, findings, delivery_gaps):
            kept = (await connection.execute(select(table.c.boot))).scalars()
            assert list(kept) == [2], table.name
