"""delivery accounting: v2 sequences, journal progress and gaps

Revision ID: 0002_lossless
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_lossless"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_sequences",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("boot", sa.BigInteger(), nullable=False),
        sa.Column("stored_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vm_id", "boot"),
    )
    op.create_table(
        "journal_applied",
        sa.Column("journal_id", sa.String(length=32), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("lsn", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("journal_id", "vm_id"),
    )
    op.create_table(
        "delivery_gaps",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("boot", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("detected_at", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("journal_id", sa.String(length=32), nullable=False),
        sa.Column("lsn", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journal_id", "lsn", name="uq_delivery_gaps_journal"),
    )
    op.create_index(
        "ix_delivery_gaps_vm", "delivery_gaps", ["vm_id", "boot", "detected_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_gaps_vm", table_name="delivery_gaps")
    op.drop_table("delivery_gaps")
    op.drop_table("journal_applied")
    op.drop_table("delivery_sequences")
