"""fleet: hosts, leases, relayed configuration, time partitions

VMs are named within their host; receivers hold leases, relay configuration
and keep export cursors. On PostgreSQL the append-mostly tables are
partitioned by time and every per-VM key is led by vm_id (so Citus can
distribute by VM).

Revision ID: 0002_fleet
Revises: 0001
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from alembic import op

revision: str = "0002_fleet"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@dataclass(frozen=True)
class _Partitioned:
    """A table turned into a range-partitioned one (frozen for this revision)."""

    name: str
    key: str
    primary_key: tuple[str, ...]
    old_primary_key: tuple[str, ...]
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sequence: str | None = None


# The receiver's clock decides where raw events go (a guest's clock is
# hostile); mappings and execs only carry the guest's time, so anything
# out of range lands in the DEFAULT partition.
_PARTITIONED = (
    _Partitioned(
        "events",
        "received_at",
        ("vm_id", "received_at", "id"),
        ("id",),
        {"ix_events_vm_at": ("vm_id", "at"), "ix_events_vm_id": ("vm_id", "id")},
        "events_id_seq",
    ),
    _Partitioned(
        "memexecs",
        "at",
        ("vm_id", "at", "id"),
        ("id",),
        {"ix_memexecs_process": ("vm_id", "boot", "uuid")},
        "memexecs_id_seq",
    ),
    _Partitioned(
        "execs",
        "at",
        ("vm_id", "boot", "uuid", "at"),
        ("vm_id", "boot", "uuid", "at"),
    ),
)


def _vms_without_name_key() -> sa.Table:
    return sa.Table(
        "vms",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=4096), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.Column("config_response", sa.Text(), nullable=True),
        sa.Column("config_response_at", sa.BigInteger(), nullable=True),
    )


def _name_vms_within_host(postgres: bool) -> None:
    if postgres:
        op.drop_constraint("vms_name_key", "vms", type_="unique")
        op.create_unique_constraint("uq_vms_host_name", "vms", ["host", "name"])
        return
    # SQLite's constraint from 0001 has no name: rebuild the table from a
    # definition without it.
    with op.batch_alter_table(
        "vms", copy_from=_vms_without_name_key(), recreate="always"
    ) as batch_op:
        batch_op.create_unique_constraint("uq_vms_host_name", ["host", "name"])


def _create_fleet_tables() -> None:
    op.create_table(
        "receivers",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=64), nullable=False),
        sa.Column("api", sa.String(length=300), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("host"),
    )
    op.create_table(
        "vm_leases",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=True),
        sa.Column("last_heartbeat", sa.BigInteger(), nullable=True),
        sa.Column("renewed_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vm_id"),
    )
    op.create_table(
        "config_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_config_requests_host_status", "config_requests", ["host", "status", "id"]
    )
    op.create_table(
        "export_cursors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _partition(table: _Partitioned) -> None:
    name = table.name
    op.execute(f"ALTER TABLE {name} RENAME TO {name}_plain")
    if table.sequence:
        # The sequence outlives the plain table and keeps numbering.
        op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY NONE")
    op.execute(
        f"CREATE TABLE {name} (LIKE {name}_plain INCLUDING DEFAULTS) "
        f'PARTITION BY RANGE ("{table.key}")'
    )
    op.execute(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")
    op.execute(f"INSERT INTO {name} SELECT * FROM {name}_plain")
    op.execute(f"DROP TABLE {name}_plain")
    op.execute(
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey "
        f"PRIMARY KEY ({_columns(table.primary_key)})"
    )
    for index, columns in table.indexes.items():
        op.execute(f"CREATE INDEX {index} ON {name} ({_columns(columns)})")
    if table.sequence:
        op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY {name}.id")


def _unpartition(table: _Partitioned) -> None:
    name = table.name
    op.execute(f"ALTER TABLE {name} RENAME TO {name}_partitioned")
    op.execute(f"ALTER TABLE {name}_partitioned DROP CONSTRAINT {name}_pkey")
    for index in table.indexes:
        op.execute(f"DROP INDEX {index}")
    if table.sequence:
        op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY NONE")
    op.execute(f"CREATE TABLE {name} (LIKE {name}_partitioned INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {name} SELECT * FROM {name}_partitioned")
    op.execute(f"DROP TABLE {name}_partitioned CASCADE")
    op.execute(
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey "
        f"PRIMARY KEY ({_columns(table.old_primary_key)})"
    )
    for index, columns in table.indexes.items():
        if index != "ix_events_vm_id":
            op.execute(f"CREATE INDEX {index} ON {name} ({_columns(columns)})")
    if table.sequence:
        op.execute(f"ALTER SEQUENCE {table.sequence} OWNED BY {name}.id")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _name_vms_within_host(postgres)
    _create_fleet_tables()
    if not postgres:
        op.create_index("ix_events_vm_id", "events", ["vm_id", "id"])
        op.create_index("ix_events_received", "events", ["received_at"])
        op.create_index("ix_memexecs_at", "memexecs", ["at"])
        op.create_index("ix_execs_at", "execs", ["at"])
        return
    for table in _PARTITIONED:
        _partition(table)
    # Findings stay one plain table (few rows, deduplicated per process),
    # keyed by VM first like everything Citus distributes.
    op.execute("ALTER TABLE findings DROP CONSTRAINT findings_pkey")
    op.execute("ALTER TABLE findings ADD PRIMARY KEY (vm_id, id)")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE findings DROP CONSTRAINT findings_pkey")
        op.execute("ALTER TABLE findings ADD PRIMARY KEY (id)")
        for table in reversed(_PARTITIONED):
            _unpartition(table)
    else:
        op.drop_index("ix_execs_at", "execs")
        op.drop_index("ix_memexecs_at", "memexecs")
        op.drop_index("ix_events_received", "events")
        op.drop_index("ix_events_vm_id", "events")
    op.drop_table("export_cursors")
    op.drop_index("ix_config_requests_host_status", "config_requests")
    op.drop_table("config_requests")
    op.drop_table("vm_leases")
    op.drop_table("receivers")
    if postgres:
        op.drop_constraint("uq_vms_host_name", "vms", type_="unique")
        op.create_unique_constraint("vms_name_key", "vms", ["name"])
    else:
        with op.batch_alter_table("vms", recreate="always") as batch_op:
            batch_op.drop_constraint("uq_vms_host_name", type_="unique")
            batch_op.create_unique_constraint("uq_vms_name", ["name"])
