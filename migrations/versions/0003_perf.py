"""index processes by (vm_id, uuid) and findings by exec session

A process is looked up by its UUID alone (the UUID names the boot), which
the primary key (vm_id, boot, uuid) can only answer by scanning the VM;
detection asks, for every batch, which exec sessions were reported.

Revision ID: 0003_perf
Revises: 0001
Create Date: 2026-12-04 17:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_perf"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_processes_uuid", "processes", ["vm_id", "uuid"])
    op.create_index(
        "ix_findings_session", "findings", ["vm_id", "boot", "exec_session_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_findings_session", table_name="findings")
    op.drop_index("ix_processes_uuid", table_name="processes")
