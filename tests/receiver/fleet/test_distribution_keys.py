"""The README's Citus section, checked against the migrated PostgreSQL schema.

No Citus runs here, so its rules are checked on the catalog instead: a table
distributed by ``vm_id`` needs ``vm_id`` in its primary key and in every
unique constraint or index, and a foreign key between distributed tables
must include it. The README's ``create_reference_table`` and
``create_distributed_table`` calls name the tables; between them they must
name every table the migrations make.
"""

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from receiver.store.engine import create_engine, migrate

README = Path(__file__).resolve().parents[3] / "README.md"
SECTION = "### Distributing by VM with Citus"
DISTRIBUTION_COLUMN = "vm_id"
# Alembic's bookkeeping; it never leaves the coordinator.
LOCAL_TABLES = {"alembic_version"}

# Unique indexes (primary keys and unique constraints included) by table;
# a partition's indexes count for its partitioned (root) table.
UNIQUE_INDEXES = """
SELECT COALESCE(pg_partition_root(t.oid), t.oid)::regclass::text AS table_name,
       i.relname AS index_name,
       x.indisprimary AS is_primary,
       ARRAY(
           SELECT a.attname
           FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, position)
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
           ORDER BY k.position
       ) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public' AND x.indisunique
"""
TABLES = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
FOREIGN_KEYS = """
SELECT c.conname AS name,
       COALESCE(pg_partition_root(c.conrelid), c.conrelid)::regclass::text AS source,
       COALESCE(pg_partition_root(c.confrelid), c.confrelid)::regclass::text
           AS target,
       ARRAY(
           SELECT s.attname || '=' || t.attname
           FROM unnest(c.conkey, c.confkey) AS k(source_col, target_col)
           JOIN pg_attribute s ON s.attrelid = c.conrelid AND s.attnum = k.source_col
           JOIN pg_attribute t ON t.attrelid = c.confrelid AND t.attnum = k.target_col
       ) AS pairs
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = 'public' AND c.contype = 'f'
"""


def readme_tables() -> tuple[set[str], set[str]]:
    """The reference and distributed tables the README's SQL names."""
    body = README.read_text().split(SECTION, 1)[1].split("\n#", 1)[0]
    reference: set[str] = set()
    distributed: set[str] = set()
    for statement in body.split(";"):
        names = set(re.findall(r"'([a-z_]+)'", statement)) - {DISTRIBUTION_COLUMN}
        if "create_reference_table" in statement:
            reference |= names
        elif "create_distributed_table" in statement:
            distributed |= names
    return reference, distributed


@pytest.fixture
async def catalog(pg_url: str) -> dict[str, list]:
    """A fresh PostgreSQL database at the latest revision, as the catalog
    describes it."""
    engine = create_engine(pg_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            return {
                "tables": (await connection.execute(text(TABLES))).scalars().all(),
                "unique": (await connection.execute(text(UNIQUE_INDEXES))).all(),
                "foreign": (await connection.execute(text(FOREIGN_KEYS))).all(),
            }
    finally:
        await engine.dispose()


def test_the_readme_names_both_kinds_of_table() -> None:
    reference, distributed = readme_tables()
    assert "processes" in distributed and "events" in distributed
    assert "vms" in reference
    assert not reference & distributed


async def test_every_table_is_distributed_or_a_reference_table(
    catalog: dict[str, list],
) -> None:
    reference, distributed = readme_tables()
    tables = set(catalog["tables"]) - LOCAL_TABLES
    assert tables - reference - distributed == set(), "tables the README leaves out"
    assert (reference | distributed) - tables == set(), "tables that do not exist"


async def test_distributed_tables_have_vm_id_in_every_unique_key(
    catalog: dict[str, list],
) -> None:
    _, distributed = readme_tables()
    primary = {row.table_name for row in catalog["unique"] if row.is_primary}
    assert distributed - primary == set(), "distributed tables without a primary key"
    violations = sorted(
        f"{row.table_name}.{row.index_name} {tuple(row.columns)}"
        for row in catalog["unique"]
        if row.table_name in distributed and DISTRIBUTION_COLUMN not in row.columns
    )
    assert violations == []


async def test_foreign_keys_between_distributed_tables_join_on_vm_id(
    catalog: dict[str, list],
) -> None:
    reference, distributed = readme_tables()
    same_vm = f"{DISTRIBUTION_COLUMN}={DISTRIBUTION_COLUMN}"
    violations = [
        f"{row.name}: {row.source} -> {row.target} {row.pairs}"
        for row in catalog["foreign"]
        if row.source in distributed
        and row.target in distributed
        and same_vm not in row.pairs
    ]
    assert violations == []
    # Citus refuses a reference table that points into a distributed one.
    backwards = [
        row.name
        for row in catalog["foreign"]
        if row.source in reference and row.target in distributed
    ]
    assert backwards == []
