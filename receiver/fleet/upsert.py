"""INSERT ... ON CONFLICT for both dialects, for the fleet's small tables."""

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(
    connection: AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    keys: list[str],
    keep: frozenset[str] = frozenset(),
) -> None:
    """Insert ``rows``, updating every column but ``keys`` and ``keep`` on a
    conflict on ``keys``."""
    if not rows:
        return
    insert: Any = (
        postgresql.insert(table)
        if connection.dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    columns = [name for name in rows[0] if name not in keys and name not in keep]
    stmt = insert.on_conflict_do_update(
        index_elements=keys,
        set_={name: getattr(insert.excluded, name) for name in columns},
    )
    await connection.execute(stmt, rows)
