"""Database engines and migrations for SQLite and PostgreSQL."""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from receiver.errors import StoreUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant will do: receivers sharing a database serialise their
# migrations on this PostgreSQL advisory lock.
MIGRATION_LOCK_KEY = 0x43534D30


def _tune_sqlite(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets the API read while ingest writes; NORMAL sync is durable
    # against process crashes, which is what a WAL journal is for.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for ``url``; SQLite gets its directory made."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    # "heads": revisions from parallel work may branch; all are applied.
    command.upgrade(config, "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database to the latest revision."""
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    except (OSError, OperationalError, DBAPIError) as exc:
        raise StoreUnavailable(f"database {engine.url!r}: {exc}") from exc
    log.info("database %s is at the latest revision", engine.url.render_as_string())
