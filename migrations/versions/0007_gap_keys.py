"""Key delivery gaps by VM, so Citus can distribute them with the VM's rows.

A table distributed by vm_id needs vm_id in its primary key and in every
unique constraint. The gap's journal record (journal_id, lsn) belongs to one
VM, so adding vm_id to its unique key lets through nothing it refused. On
PostgreSQL the primary key becomes (vm_id, id), as for findings; SQLite
keeps ``id`` alone, the only key it auto-increments.

Revision ID: 0007_gap_keys
Revises: 0006_journal_export
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_gap_keys"
down_revision: str | Sequence[str] | None = "0006_journal_export"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOURNAL_KEY = "uq_delivery_gaps_journal"


def _set_journal_key(columns: list[str]) -> None:
    with op.batch_alter_table("delivery_gaps") as batch:
        batch.drop_constraint(JOURNAL_KEY, type_="unique")
        batch.create_unique_constraint(JOURNAL_KEY, columns)


def upgrade() -> None:
    """Lead the gap's keys with vm_id."""
    _set_journal_key(["vm_id", "journal_id", "lsn"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE delivery_gaps DROP CONSTRAINT delivery_gaps_pkey")
        op.execute("ALTER TABLE delivery_gaps ADD PRIMARY KEY (vm_id, id)")


def downgrade() -> None:
    """Key gaps by id and journal record alone again."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE delivery_gaps DROP CONSTRAINT delivery_gaps_pkey")
        op.execute("ALTER TABLE delivery_gaps ADD PRIMARY KEY (id)")
    _set_journal_key(["journal_id", "lsn"])
