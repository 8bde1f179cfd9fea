"""The PostgreSQL write path: binary COPY into staging tables, then merge.

COPY is by far the cheapest way to move rows into PostgreSQL. Rows that may
meet stored ones (processes, execs, boots, containers) are copied into
temporary tables and merged with ``INSERT ... SELECT ... ON CONFLICT``, by
the same assignments as the SQLite path; append-only rows (events,
memexecs) are copied straight into their tables. asyncpg errors are
translated here, once, into the SQLAlchemy errors the ingest retry expects.
"""

import functools
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no stubs
from sqlalchemy import Table, column, func, select, table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.batch import EVENT_COLUMNS, Batch, process_merge_updates
from receiver.store.models import boots, containers, events, execs, memexecs, processes

STAGED = (processes, execs, boots, containers)
PROCESS_COLUMNS = tuple(c.name for c in processes.c)
EXEC_COLUMNS = tuple(c.name for c in execs.c)
CONTAINER_COLUMNS = tuple(c.name for c in containers.c)
BOOT_COLUMNS = ("vm_id", "boot", "first_seen", "last_seen")
MEMEXEC_COLUMNS = tuple(c.name for c in memexecs.c if c.name != "id")

_process_tuple = attrgetter(*PROCESS_COLUMNS)
_exec_tuple = itemgetter(*EXEC_COLUMNS)
_container_tuple = itemgetter(*CONTAINER_COLUMNS)
_memexec_tuple = itemgetter(*MEMEXEC_COLUMNS)

# Errors a later retry can cure: a lost connection, a restarting server,
# a deadlock or serialization failure.
TRANSIENT_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def stage_name(target: Table) -> str:
    """The session-local staging table of ``target``."""
    return f"csm_stage_{target.name}"


CREATE_STAGING = ";\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {stage_name(t)} (LIKE {t.name}) "
    "ON COMMIT DELETE ROWS"
    for t in STAGED
)


def _merge_sql(target: Table, updates: dict[str, Any] | None) -> str:
    """``INSERT INTO target SELECT * FROM its stage ON CONFLICT ...``.

    ``updates`` None means keep the stored row (DO NOTHING).
    """
    names = [c.name for c in target.c]
    keys = [c.name for c in target.primary_key.columns]
    stage = table(stage_name(target), *(column(name) for name in names))
    rows = select(*(stage.c[name] for name in names)).order_by(
        *(stage.c[key] for key in keys)
    )
    stmt = postgresql.insert(target).from_select(names, rows)
    if updates is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    else:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


@functools.cache
def merge_statements() -> dict[str, str]:
    """The merge statement of each staged table, compiled once."""
    excluded = postgresql.insert(processes).excluded
    boot_new = postgresql.insert(boots).excluded
    container_new = postgresql.insert(containers).excluded
    return {
        processes.name: _merge_sql(processes, process_merge_updates(excluded)),
        execs.name: _merge_sql(execs, None),
        boots.name: _merge_sql(
            boots,
            {
                "first_seen": func.least(boots.c.first_seen, boot_new.first_seen),
                "last_seen": func.greatest(boots.c.last_seen, boot_new.last_seen),
            },
        ),
        containers.name: _merge_sql(
            containers,
            {
                c.name: func.coalesce(container_new[c.name], c)
                for c in containers.c
                if not c.primary_key
            },
        ),
    }


async def _copy(
    raw: asyncpg.Connection,
    name: str,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
) -> None:
    await raw.copy_records_to_table(name, records=records, columns=list(columns))


async def _merge(
    raw: asyncpg.Connection,
    target: Table,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
) -> None:
    await _copy(raw, stage_name(target), columns, records)
    await raw.execute(merge_statements()[target.name])


async def _write(raw: asyncpg.Connection, batch: Batch) -> None:
    await raw.execute(CREATE_STAGING)
    if batch.boots:
        boot_rows = [
            (vm_id, boot, first, last)
            for (vm_id, boot), (first, last) in batch.boots.items()
        ]
        await _merge(raw, boots, BOOT_COLUMNS, boot_rows)
    if batch.processes:
        process_rows = [_process_tuple(p) for p in batch.sorted_patches()]
        await _merge(raw, processes, PROCESS_COLUMNS, process_rows)
    if batch.containers:
        container_rows = [_container_tuple(r) for r in batch.containers.values()]
        await _merge(raw, containers, CONTAINER_COLUMNS, container_rows)
    if batch.execs:
        exec_rows = [_exec_tuple(r) for r in batch.execs.values()]
        await _merge(raw, execs, EXEC_COLUMNS, exec_rows)
    if batch.memexecs:
        memexec_rows = [_memexec_tuple(r) for r in batch.memexecs]
        await _copy(raw, memexecs.name, MEMEXEC_COLUMNS, memexec_rows)
    if batch.events:
        await _copy(raw, events.name, EVENT_COLUMNS, batch.events)


async def copy_batch(
    engine: AsyncEngine,
    batch: Batch,
    also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> None:
    """Write ``batch`` to PostgreSQL in one transaction, with ``also`` in it."""
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        raw: asyncpg.Connection = fairy.driver_connection
        try:
            async with raw.transaction():
                await _write(raw, batch)
                if also is not None:
                    await also(raw)
        except TRANSIENT_ERRORS as exc:
            await connection.invalidate(exc)
            raise OperationalError("COPY batch", None, exc) from exc
        except asyncpg.PostgresError as exc:
            raise DBAPIError("COPY batch", None, exc) from exc
