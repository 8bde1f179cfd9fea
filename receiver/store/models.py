"""The database schema, as SQLAlchemy Core tables shared by both dialects.

Times are integer nanoseconds since the epoch (the guest's unit). Unsigned
64-bit values from the guest are stored as their signed two's complement in
BIGINT columns (see ``receiver.store.codec``). Byte strings from the guest
stay bytes; lists of them (argv, envp, labels) are NUL-joined, which is
lossless because the kernel's strings cannot contain NUL.

On PostgreSQL the append-mostly tables (events, execs, memexecs) are range
partitioned by time and keyed by VM first (see ``receiver.store.partitions``
and migration ``0002_fleet``); the tables here describe their columns.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

vms = Table(
    "vms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False),
    Column("host", String(255), nullable=False),
    Column("transport", String(8), nullable=False),
    Column("address", String(4096), nullable=False),
    Column("registered", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Column("config_response", Text),
    Column("config_response_at", BigInteger),
    # A VM's name is unique within its hypervisor host, not across the fleet.
    UniqueConstraint("host", "name", name="uq_vms_host_name"),
)

boots = Table(
    "boots",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("boot", BigInteger, primary_key=True),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
)

containers = Table(
    "containers",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("boot", BigInteger, primary_key=True),
    Column("container_id", BigInteger, primary_key=True),
    Column("created_at", BigInteger),
    Column("pod_namespace", LargeBinary),
    Column("pod_name", LargeBinary),
    Column("container_name", LargeBinary),
    Column("image", LargeBinary),
    Column("image_id", LargeBinary),
    Column("labels", LargeBinary),
    Column("init_uuid", LargeBinary(16)),
)

processes = Table(
    "processes",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("boot", BigInteger, primary_key=True),
    Column("uuid", LargeBinary(16), primary_key=True),
    Column("pid", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("parent_uuid", LargeBinary(16)),
    Column("parent_pid", BigInteger),
    Column("binary", LargeBinary),
    Column("binary_ino", BigInteger),
    Column("binary_layer", String(8)),
    Column("binary_written_by", LargeBinary(16)),
    Column("argv", LargeBinary),
    Column("envp", LargeBinary),
    Column("container_id", BigInteger),
    Column("container_pid", BigInteger),
    Column("container_parent_pid", BigInteger),
    Column("exec_session_id", BigInteger),
    Column("streams", Text),
    Column("exec_at", BigInteger),
    Column("exited_at", BigInteger),
    # The wait status from a v2 guest (exit code << 8, or the signal).
    Column("exit_status", BigInteger),
    Index("ix_processes_parent", "vm_id", "boot", "parent_uuid"),
    Index("ix_processes_container", "vm_id", "container_id"),
    Index("ix_processes_session", "vm_id", "exec_session_id"),
    Index("ix_processes_started", "vm_id", "started_at"),
    Index("ix_processes_uuid", "vm_id", "uuid"),
)

execs = Table(
    "execs",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("boot", BigInteger, primary_key=True),
    Column("uuid", LargeBinary(16), primary_key=True),
    Column("at", BigInteger, primary_key=True),
    Column("pid", BigInteger, nullable=False),
    Column("binary", LargeBinary),
    Column("binary_layer", String(8)),
    Column("binary_written_by", LargeBinary(16)),
    Column("argv", LargeBinary),
    Column("envp", LargeBinary),
    Column("streams", Text),
)

memexecs = Table(
    "memexecs",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("vm_id", Integer, nullable=False),
    Column("boot", BigInteger, nullable=False),
    Column("uuid", LargeBinary(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("action", SmallInteger, nullable=False),
    Column("path", LargeBinary),
    Column("ino", BigInteger),
    Column("layer", String(8)),
    Column("written_by", LargeBinary(16)),
    Column("start_addr", BigInteger),
    Column("end_addr", BigInteger),
    Column("new_flags", BigInteger),
    Column("req_flags", BigInteger),
    Column("old_vm_flags", BigInteger),
    Column("mmap_flags", BigInteger),
    Column("is_initial_mmap", Boolean, nullable=False),
    Index("ix_memexecs_process", "vm_id", "boot", "uuid"),
)

events = Table(
    "events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("vm_id", Integer, nullable=False),
    Column("boot", BigInteger, nullable=False),
    Column("kind", String(12), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("uuid", LargeBinary(16)),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_events_vm_at", "vm_id", "at"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("vm_id", Integer, nullable=False),
    Column("boot", BigInteger, nullable=False),
    Column("uuid", LargeBinary(16), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("container_id", BigInteger),
    Column("exec_session_id", BigInteger),
    Column("details", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("vm_id", "boot", "uuid", "kind", name="uq_findings_process_kind"),
    Index("ix_findings_at", "at"),
    Index("ix_findings_session", "vm_id", "boot", "exec_session_id"),
)

# The configuration each VM should run; scope "*" is the fleet default.
desired_configs = Table(
    "desired_configs",
    metadata,
    Column("scope", String(63), primary_key=True),
    Column("config", Text, nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Every configuration change and what the guest answered.
config_changes = Table(
    "config_changes",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("scope", String(63), nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("config", Text, nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Column("changed_by", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response", Text),
    Column("answered_at", BigInteger),
    Index("ix_config_changes_scope", "scope", "id"),
)

# Delivery accounting (protocol v2 and the ingest journal).

# The highest v2 sequence of each boot that is in the store; duplicates at or
# below it are dropped, across receiver restarts.
delivery_sequences = Table(
    "delivery_sequences",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("boot", BigInteger, primary_key=True),
    Column("stored_seq", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# How far each VM's records of one receiver's journal are in the store:
# replaying the journal after a crash skips what is already here.
journal_applied = Table(
    "journal_applied",
    metadata,
    Column("journal_id", String(32), primary_key=True),
    Column("vm_id", Integer, primary_key=True),
    Column("lsn", BigInteger, nullable=False),
)

# Events that never reached the store, per VM and boot, and why.
delivery_gaps = Table(
    "delivery_gaps",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("vm_id", Integer, nullable=False),
    Column("boot", BigInteger, nullable=False),
    Column("cause", String(32), nullable=False),
    Column("first_seq", BigInteger),
    Column("last_seq", BigInteger),
    Column("count", BigInteger),
    Column("started_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("detected_at", BigInteger, nullable=False),
    Column("details", Text),
    # The journal record that carried the gap: replays insert it once. It
    # belongs to one VM; vm_id leads so Citus can distribute gaps by VM
    # (on PostgreSQL the primary key is (vm_id, id), see migration 0006).
    Column("journal_id", String(32), nullable=False),
    Column("lsn", BigInteger, nullable=False),
    UniqueConstraint("vm_id", "journal_id", "lsn", name="uq_delivery_gaps_journal"),
    Index("ix_delivery_gaps_vm", "vm_id", "boot", "detected_at"),
)

# Fleet tables: receivers sharing one database coordinate only through these.

# One row per running receiver (hypervisor host), renewed while it runs.
receivers = Table(
    "receivers",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("instance", String(64), nullable=False),
    Column("api", String(300), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Which receiver holds a VM's connection, renewed while that receiver runs.
vm_leases = Table(
    "vm_leases",
    metadata,
    Column("vm_id", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("health", String(16), nullable=False),
    Column("protocol", String(8)),
    Column("last_heartbeat", BigInteger),
    Column("renewed_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Configuration pushes for a VM connected to another receiver: written by
# any receiver, claimed and answered by the one on the VM's host.
config_requests = Table(
    "config_requests",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("vm_id", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("config", Text, nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("delivery", String(16)),
    Column("answer", Text),
    Column("answered_at", BigInteger),
    Index("ix_config_requests_host_status", "host", "status", "id"),
)
