"""The exit status a v2 guest reports, kept with the process.

Revision ID: 0005_exit_status
Revises: 0004_merge
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_exit_status"
down_revision: str | Sequence[str] | None = "0004_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add processes.exit_status."""
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("exit_status", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop processes.exit_status."""
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("exit_status")
