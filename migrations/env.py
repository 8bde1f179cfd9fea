"""Alembic environment: runs on the connection the receiver hands over.

``receiver.store.engine.migrate`` passes a live connection in
``config.attributes["connection"]``; run standalone (``alembic -x url=...``)
it opens its own async engine.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from receiver.store.models import metadata


def run_on(connection: Connection) -> None:
    """Apply migrations on a synchronous connection."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone(url: str) -> None:
    """Open an engine for ``url`` and migrate it."""
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        url = context.config.get_main_option("sqlalchemy.url")
    asyncio.run(run_standalone(str(url)))
