"""The collector configuration (host- or locally-set) and the agent's settings."""

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from csm_wire.gen import schema_pb2 as pb
from guest_lsm.errors import ConfigError
from guest_lsm.kernel.backend import Backend

DEFAULT_ARGV_LIMIT_BYTES = 4096
DEFAULT_ENVP_LIMIT_BYTES = 4096
# What the kernel side captures at most; larger budgets are cut to this.
MAX_ARGV_LIMIT_BYTES = 1 << 20
MAX_ALLOWLIST_NAMES = 1024
DEFAULT_CONTROL_SOCKET = Path("/run/csm-guest/control.sock")
DEFAULT_BUILD_DIR = Path("/var/cache/csm-guest")
HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_QUEUE_FRAMES = 8192
CONSUME_INTERVAL_S = 0.01
DEFAULT_REPLAY_EVENTS = 65_536
DEFAULT_REPLAY_BYTES = 64 << 20
DEFAULT_HELLO_TIMEOUT_S = 5.0
DEFAULT_COUNTERS_INTERVAL_S = 10.0


class Protocol(enum.Enum):
    """Which protocol the agent speaks to the host."""

    # Say hello; speak v1 on the same connection if the host does not answer.
    AUTO = "auto"
    # Plain v1 frames, no hello: events produced while disconnected are lost.
    V1 = "v1"
    # v2 only: a host that answers in v1 is dropped and redialled.
    V2 = "v2"


@dataclass(slots=True)
class CollectorConfig:
    """Which collectors run and with what limits; a whole replacement each time."""

    container_enabled: bool = False
    execute_enabled: bool = False
    argv_limit: int = 0
    envp_limit: int = 0
    envp_allowlist: list[str] = field(default_factory=list)
    memexec_enabled: bool = False

    @classmethod
    def all_on(cls) -> "CollectorConfig":
        """Every collector on with the default budgets."""
        return cls(
            container_enabled=True,
            execute_enabled=True,
            argv_limit=DEFAULT_ARGV_LIMIT_BYTES,
            envp_limit=DEFAULT_ENVP_LIMIT_BYTES,
            memexec_enabled=True,
        )

    @property
    def any_enabled(self) -> bool:
        """Whether at least one collector is on."""
        return self.container_enabled or self.execute_enabled or self.memexec_enabled

    @classmethod
    def from_request(cls, request: pb.ConfigurationRequest) -> "CollectorConfig":
        """Translate a host request; an absent part means that collector is off."""
        config = cls()
        if request.HasField("container_config"):
            config.container_enabled = request.container_config.enabled
        if request.HasField("execute_config"):
            execute = request.execute_config
            config.execute_enabled = execute.enabled
            config.argv_limit = min(execute.argv_limit, MAX_ARGV_LIMIT_BYTES)
            config.envp_limit = min(execute.envp_limit, MAX_ARGV_LIMIT_BYTES)
            config.envp_allowlist = list(execute.envp_allowlist)[:MAX_ALLOWLIST_NAMES]
        if request.HasField("memexec_config"):
            config.memexec_enabled = request.memexec_config.enabled
        return config

    def to_request(self) -> pb.ConfigurationRequest:
        """The request that would set this configuration."""
        return pb.ConfigurationRequest(
            container_config=pb.ContainerCollectorConfig(
                enabled=self.container_enabled
            ),
            execute_config=pb.ExecuteCollectorConfig(
                enabled=self.execute_enabled,
                argv_limit=self.argv_limit,
                envp_limit=self.envp_limit,
                envp_allowlist=self.envp_allowlist,
            ),
            memexec_config=pb.MemExecCollectorConfig(enabled=self.memexec_enabled),
        )

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "CollectorConfig":
        """Build from a JSON object with this class's field names."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        try:
            config = cls(**data)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc
        config.validate()
        return config

    def validate(self) -> None:
        """Check types and limits; raise ConfigError."""
        for name in ("container_enabled", "execute_enabled", "memexec_enabled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false")
        for name in ("argv_limit", "envp_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= MAX_ARGV_LIMIT_BYTES:
                raise ConfigError(f"{name} must be 0..{MAX_ARGV_LIMIT_BYTES}")
        allowlist = self.envp_allowlist
        if not isinstance(allowlist, list) or not all(
            isinstance(name, str) for name in allowlist
        ):
            raise ConfigError("envp_allowlist must be a list of names")
        if len(allowlist) > MAX_ALLOWLIST_NAMES:
            raise ConfigError(f"envp_allowlist holds at most {MAX_ALLOWLIST_NAMES}")

    def to_mapping(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def load_config_file(path: Path) -> CollectorConfig:
    """Read a collector configuration from a JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return CollectorConfig.from_mapping(data)


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``csm-guest run`` runs; one field per command-line flag."""

    backend: Backend = Backend.AUTO
    cid: int = 2
    port: int = 4444
    unix: Path | None = None
    control: Path = DEFAULT_CONTROL_SOCKET
    local_stream: Path | None = None
    build_dir: Path = DEFAULT_BUILD_DIR
    config_file: Path | None = None
    enable_all: bool = False
    bundle_roots: tuple[Path, ...] = ()
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    heartbeat_s: float = HEARTBEAT_INTERVAL_S
    consume_interval_s: float = CONSUME_INTERVAL_S
    reconnect_max_s: float = 5.0
    protocol: Protocol = Protocol.AUTO
    replay_events: int = DEFAULT_REPLAY_EVENTS
    replay_bytes: int = DEFAULT_REPLAY_BYTES
    hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S
    counters_s: float = DEFAULT_COUNTERS_INTERVAL_S
