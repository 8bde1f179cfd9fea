"""The receiver's settings: one typed object from flags, environment and TOML.

Every flag ``--some-flag`` is also the environment variable ``CSM_SOME_FLAG``
and the key ``some_flag`` of the file given by ``--config``. Precedence, from
strongest: flag, environment, file, default.
"""

import argparse
import os
import re
import socket
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver.errors import ConfigError

DEFAULT_CSM_PORT = 4444
DEFAULT_API = "127.0.0.1:8080"
VM_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
NATS_SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
KAFKA_BROKER_PATTERN = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})$"
)
KAFKA_TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
# Kafka's longest topic name, less the ".findings" the sink appends.
KAFKA_TOPIC_PREFIX_MAX = 249 - len(".findings")

DEFAULT_MAX_BOOTS_PER_VM = 64
DEFAULT_MAX_CONTAINERS_PER_BOOT = 4096
DEFAULT_MAX_EXEC_SESSIONS_PER_BOOT = 65_536


@dataclass(frozen=True, slots=True)
class GuestLimits:
    """The caps, as settings."""

    max_boots: int = DEFAULT_MAX_BOOTS_PER_VM
    max_containers_per_boot: int = DEFAULT_MAX_CONTAINERS_PER_BOOT
    max_exec_sessions_per_boot: int = DEFAULT_MAX_EXEC_SESSIONS_PER_BOOT


@dataclass(frozen=True, slots=True)
class VmSpec:
    """How one VM reaches the receiver: a hybrid socket path or a guest CID."""

    name: str
    transport: str  # "hybrid" or "cid"
    uds_path: str | None = None
    cid: int | None = None

    @property
    def address(self) -> str:
        """The transport address as shown to operators."""
        if self.transport == "hybrid":
            return str(self.uds_path)
        return f"cid:{self.cid}"


def validate_vm_name(name: str) -> str:
    """Return ``name`` if it is a usable VM name, else raise ConfigError."""
    if not VM_NAME_PATTERN.match(name):
        raise ConfigError(
            f"invalid VM name {name!r}: use 1-63 letters, digits, '.', '_' or '-'"
        )
    return name


def parse_vm_spec(text: str) -> VmSpec:
    """Parse ``NAME=hybrid:PATH`` or ``NAME=cid:N``."""
    name, sep, target = text.partition("=")
    kind, colon, value = target.partition(":")
    if not sep or not colon or not value:
        raise ConfigError(f"--vm {text!r}: expected NAME=hybrid:PATH or NAME=cid:N")
    validate_vm_name(name)
    if kind == "hybrid":
        return VmSpec(name, "hybrid", uds_path=value)
    if kind == "cid":
        try:
            cid = int(value)
        except ValueError:
            raise ConfigError(f"--vm {text!r}: CID must be a number") from None
        if not 3 <= cid < 2**32 - 1:
            raise ConfigError(f"--vm {text!r}: CID {cid} is not a guest CID")
        return VmSpec(name, "cid", cid=cid)
    raise ConfigError(f"--vm {text!r}: unknown transport {kind!r}")


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` for the API address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--api {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to run, validated."""

    data_dir: Path = Path("./var")
    db: str = ""
    api: str = DEFAULT_API
    port: int = DEFAULT_CSM_PORT
    no_vsock: bool = False
    vms: tuple[VmSpec, ...] = ()
    host: str = field(default_factory=socket.gethostname)
    api_token: str | None = None
    tokens_file: str | None = None
    max_frame_bytes: int = 1 << 20
    ingest_queue_events: int = 100_000
    batch_max_events: int = 5000
    batch_interval_s: float = 0.05
    heartbeat_interval_s: float = 5.0
    heartbeat_missed_unhealthy: int = 3
    config_timeout_s: float = 5.0
    max_connections_per_vm: int = 8
    idle_timeout_s: float = 60.0
    max_boots_per_vm: int = DEFAULT_MAX_BOOTS_PER_VM
    max_containers_per_boot: int = DEFAULT_MAX_CONTAINERS_PER_BOOT
    max_exec_sessions_per_boot: int = DEFAULT_MAX_EXEC_SESSIONS_PER_BOOT
    ingest_vm_max_bytes: int = 16 << 20
    ingest_total_max_bytes: int = 256 << 20
    journal_max_bytes: int = 1 << 30
    journal_segment_bytes: int = 16 << 20
    journal_no_fsync: bool = False
    log_level: str = "INFO"
    fleet_heartbeat_s: float = 2.0
    retention_days: float = 0.0
    partition_ahead_days: int = 3
    nats_url: str = ""
    nats_stream: str = "CSM"
    nats_subject: str = "csm"
    kafka_bootstrap: str = ""
    kafka_topic_prefix: str = "csm"
    rules: str | None = None
    webhook_url: str | None = None
    webhook_queue_findings: int = 10_000
    webhook_timeout_s: float = 5.0
    webhook_retry_max_s: float = 30.0

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL, SQLite under the data dir unless given."""
        if self.db:
            return self.db
        return f"sqlite+aiosqlite:///{self.data_dir / 'csm.db'}"

    @property
    def guest_limits(self) -> GuestLimits:
        """The per-VM identity caps."""
        return GuestLimits(
            max_boots=self.max_boots_per_vm,
            max_containers_per_boot=self.max_containers_per_boot,
            max_exec_sessions_per_boot=self.max_exec_sessions_per_boot,
        )

    @property
    def api_address(self) -> tuple[str, int]:
        """The API listen address as (host, port)."""
        return parse_host_port(self.api)


_FLAGS: dict[str, dict[str, Any]] = {
    "data_dir": {"help": "SQLite file, ingest journal and generated secrets"},
    "db": {"help": "SQLAlchemy URL (default: SQLite under --data-dir)"},
    "api": {"help": "REST API and dashboard address HOST:PORT"},
    "port": {"type": int, "help": "the CSM port on AF_VSOCK and in hybrid names"},
    "no_vsock": {"action": "store_true", "help": "do not open the AF_VSOCK listener"},
    "vm": {
        "action": "append",
        "help": "NAME=hybrid:PATH or NAME=cid:N (repeatable)",
    },
    "host": {"help": "this hypervisor host's name"},
    "api_token": {"help": "operator token (default: generated into the data dir)"},
    "tokens_file": {"help": "hashed tokens with roles (default: <data-dir>/tokens)"},
    "max_frame_bytes": {"type": int, "help": "largest frame accepted from a guest"},
    "ingest_queue_events": {"type": int, "help": "events buffered before drops"},
    "batch_max_events": {"type": int, "help": "events per database batch"},
    "batch_interval_s": {"type": float, "help": "longest wait before a batch"},
    "heartbeat_interval_s": {"type": float, "help": "guest heartbeat period"},
    "heartbeat_missed_unhealthy": {"type": int, "help": "missed beats to unhealthy"},
    "config_timeout_s": {"type": float, "help": "wait for a guest's config answer"},
    "max_connections_per_vm": {"type": int, "help": "live connections per VM"},
    "idle_timeout_s": {"type": float, "help": "close a connection silent this long"},
    "max_boots_per_vm": {"type": int, "help": "boots (machine ids) kept per VM"},
    "max_containers_per_boot": {"type": int, "help": "containers kept per boot"},
    "max_exec_sessions_per_boot": {"type": int, "help": "exec sessions per boot"},
    "ingest_vm_max_bytes": {
        "type": int,
        "help": "bytes queued for one VM before its connections are paused",
    },
    "ingest_total_max_bytes": {
        "type": int,
        "help": "bytes queued in total before the busiest VMs are paused",
    },
    "journal_max_bytes": {
        "type": int,
        "help": "ingest journal size bound (full: v2 replays later, v1 drops)",
    },
    "journal_segment_bytes": {"type": int, "help": "size of one journal file"},
    "journal_no_fsync": {
        "action": "store_true",
        "help": "do not fsync the journal (survives a crash, not a power cut)",
    },
    "log_level": {"help": "DEBUG, INFO, WARNING or ERROR"},
    "fleet_heartbeat_s": {"type": float, "help": "period of host and VM leases"},
    "retention_days": {"type": float, "help": "days of event history kept (0: all)"},
    "partition_ahead_days": {"type": int, "help": "daily partitions made ahead"},
    "nats_url": {"help": "NATS server to export events, gaps and findings to"},
    "nats_stream": {"help": "the JetStream stream exported to"},
    "nats_subject": {"help": "subject prefix of exported messages"},
    "kafka_bootstrap": {
        "metavar": "HOST:PORT[,HOST:PORT]",
        "help": "Kafka brokers to export events, gaps and findings to",
    },
    "kafka_topic_prefix": {"help": "topics are <prefix>.events, .gaps and .findings"},
    "rules": {"help": "TOML file of detection rules (reloaded on SIGHUP)"},
    "webhook_url": {"help": "http(s) URL that receives each finding as JSON"},
    "webhook_queue_findings": {"type": int, "help": "findings held for the webhook"},
    "webhook_timeout_s": {"type": float, "help": "timeout of one webhook attempt"},
    "webhook_retry_max_s": {"type": float, "help": "longest wait between retries"},
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting to ``parser``; unset flags stay None."""
    parser.add_argument("--config", help="TOML file with settings")
    for name, options in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        # Values are converted by build_settings, so a bad one is a
        # one-line ConfigError rather than an argparse usage dump.
        argparse_options = {k: v for k, v in options.items() if k != "type"}
        parser.add_argument(flag, dest=name, default=None, **argparse_options)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _FLAGS:
        raw = environ.get("CSM_" + name.upper())
        if raw is not None:
            values[name] = raw
    return values


def _from_file(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: {exc}") from exc
    unknown = sorted(set(data) - set(_FLAGS))
    if unknown:
        raise ConfigError(f"--config {path}: unknown keys {', '.join(unknown)}")
    return data


def _coerce(name: str, value: Any) -> Any:
    kind = _FLAGS[name].get("type")
    if _FLAGS[name].get("action") == "store_true":
        if isinstance(value, str):
            return value.lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if name == "vm":
        items = value.split(",") if isinstance(value, str) else value
        return tuple(parse_vm_spec(str(item)) for item in items if item)
    if kind is not None:
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--{name.replace('_', '-')}: {value!r}") from None
    return str(value)


def build_settings(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge parsed flags, environment and config file into Settings."""
    merged: dict[str, Any] = _from_file(getattr(namespace, "config", None))
    merged.update(_from_environment(os.environ if environ is None else environ))
    for name in _FLAGS:
        value = getattr(namespace, name, None)
        if value is not None:
            merged[name] = value
    values = {name: _coerce(name, value) for name, value in merged.items()}
    if "vm" in values:
        values["vms"] = values.pop("vm")
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    settings.api_address  # noqa: B018 - parses and raises ConfigError if bad
    if not 0 < settings.port < 2**32:
        raise ConfigError(f"--port {settings.port}: out of range")
    names = [vm.name for vm in settings.vms]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"--vm: duplicate names {', '.join(duplicates)}")
    if settings.max_frame_bytes < 4096:
        raise ConfigError("--max-frame-bytes must be at least 4096")
    if settings.ingest_queue_events < 1 or settings.batch_max_events < 1:
        raise ConfigError("queue and batch sizes must be positive")
    if settings.fleet_heartbeat_s <= 0 or settings.retention_days < 0:
        raise ConfigError("--fleet-heartbeat-s must be positive, --retention-days >= 0")
    if not 0 <= settings.partition_ahead_days <= 366:
        raise ConfigError("--partition-ahead-days must be 0 to 366")
    if not NATS_SUBJECT_PATTERN.match(settings.nats_subject):
        raise ConfigError(f"--nats-subject {settings.nats_subject!r}: not a subject")
    positive = (
        "ingest_queue_events",
        "batch_max_events",
        "max_connections_per_vm",
        "max_boots_per_vm",
        "max_containers_per_boot",
        "max_exec_sessions_per_boot",
        "ingest_vm_max_bytes",
        "ingest_total_max_bytes",
        "journal_segment_bytes",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if settings.journal_max_bytes < settings.max_frame_bytes * 2:
        raise ConfigError(
            "--journal-max-bytes must hold two frames of the largest size"
        )
    if settings.idle_timeout_s <= settings.heartbeat_interval_s:
        raise ConfigError("--idle-timeout-s must exceed --heartbeat-interval-s")
    _validate_webhook(settings)
    _validate_kafka(settings)


def _validate_kafka(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap
    if bootstrap:
        for broker in bootstrap.split(","):
            match = KAFKA_BROKER_PATTERN.match(broker)
            if match is None or not 0 < int(match.group(3)) < 65536:
                raise ConfigError(
                    f"--kafka-bootstrap {bootstrap!r}: expected HOST:PORT[,HOST:PORT]"
                )
    prefix = settings.kafka_topic_prefix
    if not KAFKA_TOPIC_PATTERN.match(prefix) or len(prefix) > KAFKA_TOPIC_PREFIX_MAX:
        raise ConfigError(
            f"--kafka-topic-prefix {prefix!r}: use 1-{KAFKA_TOPIC_PREFIX_MAX}"
            " letters, digits, '.', '_' or '-'"
        )


def _validate_webhook(settings: Settings) -> None:
    url = settings.webhook_url
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"--webhook-url {url!r}: expected an http:// or https:// URL")
    if settings.webhook_queue_findings < 1:
        raise ConfigError("--webhook-queue-findings must be positive")
    if not settings.webhook_timeout_s > 0 or not settings.webhook_retry_max_s > 0:
        raise ConfigError("webhook timeout and retry wait must be positive")


def parse_settings(argv: Sequence[str]) -> Settings:
    """Parse a ``serve`` command line into Settings (used by tests)."""
    parser = argparse.ArgumentParser(prog="csm-receiver serve")
    add_settings_arguments(parser)
    return build_settings(parser.parse_args(list(argv)))
