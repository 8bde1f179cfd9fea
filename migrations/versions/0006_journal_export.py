"""Export reads the ingest journal: the database cursors are gone.

Revision ID: 0006_journal_export
Revises: 0005_exit_status
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_journal_export"
down_revision: str | Sequence[str] | None = "0005_exit_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop export_cursors: positions now live beside the journal."""
    op.drop_table("export_cursors")


def downgrade() -> None:
    """Bring export_cursors back, empty (export restarts from the start)."""
    op.create_table(
        "export_cursors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
