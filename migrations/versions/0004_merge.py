"""Join the revisions made side by side (fleet, lossless delivery, indexes).

Revision ID: 0004_merge
Revises: 0002_fleet, 0002_lossless, 0003_perf
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0004_merge"
down_revision: str | Sequence[str] | None = ("0002_fleet", "0002_lossless", "0003_perf")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: this only gives the history one head again."""


def downgrade() -> None:
    """Nothing to change."""
