"""The JSON form of a ConfigurationRequest: checked, converted both ways.

A request is a full replace: a collector whose part is absent (or null) is
turned off in the guest. Every value is checked here, once, so nothing that
reaches a guest can exceed what a v1 kernel reads.
"""

import re
from typing import Any

from csm_wire.codec import HEADER_BYTES, MAX_GUEST_CONFIG_FRAME_BYTES
from csm_wire.gen import schema_pb2 as pb

# A guest copies argv and envp into its event buffers; beyond a few pages
# per process the events would not fit in a frame anyway.
MAX_ARGV_LIMIT_BYTES = 65536
MAX_ENVP_LIMIT_BYTES = 65536
MAX_ALLOWLIST_NAMES = 128
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

PARTS = ("container_config", "execute_config", "memexec_config")
_SIMPLE_KEYS = frozenset({"enabled"})
_EXECUTE_KEYS = frozenset({"enabled", "argv_limit", "envp_limit", "envp_allowlist"})


class ConfigInvalid(ValueError):
    """A configuration document that cannot be sent; names the bad field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _check_keys(value: Any, field: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigInvalid(field, "must be an object or null")
    for key in value:
        if key not in allowed:
            raise ConfigInvalid(f"{field}.{key}", "unknown field")
    return value


def _enabled(part: dict[str, Any], field: str) -> bool:
    enabled = part.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigInvalid(f"{field}.enabled", "must be true or false")
    return enabled


def _limit(part: dict[str, Any], field: str, default: int, maximum: int) -> int:
    value = part.get(field.rsplit(".", 1)[-1], default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigInvalid(field, "must be an integer")
    if not 0 <= value <= maximum:
        raise ConfigInvalid(field, f"must be from 0 to {maximum} bytes")
    return value


def _allowlist(part: dict[str, Any]) -> list[str]:
    field = "execute_config.envp_allowlist"
    names = part.get("envp_allowlist", [])
    if not isinstance(names, list):
        raise ConfigInvalid(field, "must be a list of variable names")
    if len(names) > MAX_ALLOWLIST_NAMES:
        raise ConfigInvalid(field, f"at most {MAX_ALLOWLIST_NAMES} names")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not ENV_NAME_PATTERN.match(name):
            raise ConfigInvalid(
                f"{field}[{index}]",
                "an environment variable name: letters, digits, '_', not "
                "starting with a digit, at most 128 characters",
            )
    if len(set(names)) != len(names):
        raise ConfigInvalid(field, "names must not repeat")
    return list(names)


def _execute(part: dict[str, Any]) -> pb.ExecuteCollectorConfig:
    part = _check_keys(part, "execute_config", _EXECUTE_KEYS)
    return pb.ExecuteCollectorConfig(
        enabled=_enabled(part, "execute_config"),
        argv_limit=_limit(part, "execute_config.argv_limit", 0, MAX_ARGV_LIMIT_BYTES),
        envp_limit=_limit(part, "execute_config.envp_limit", 0, MAX_ENVP_LIMIT_BYTES),
        envp_allowlist=_allowlist(part),
    )


def request_from_json(document: Any) -> pb.ConfigurationRequest:
    """Check a JSON configuration and build the request; raise ConfigInvalid."""
    body = _check_keys(document, "body", frozenset(PARTS))
    request = pb.ConfigurationRequest()
    container = body.get("container_config")
    if container is not None:
        part = _check_keys(container, "container_config", _SIMPLE_KEYS)
        request.container_config.enabled = _enabled(part, "container_config")
    execute = body.get("execute_config")
    if execute is not None:
        request.execute_config.CopyFrom(_execute(execute))
    memexec = body.get("memexec_config")
    if memexec is not None:
        part = _check_keys(memexec, "memexec_config", _SIMPLE_KEYS)
        request.memexec_config.enabled = _enabled(part, "memexec_config")
    size = HEADER_BYTES + request.ByteSize()
    if size > MAX_GUEST_CONFIG_FRAME_BYTES:
        raise ConfigInvalid(
            "body",
            f"encodes to {size} bytes; a guest reads at most "
            f"{MAX_GUEST_CONFIG_FRAME_BYTES} (shorten the allowlist)",
        )
    return request


def request_to_json(request: pb.ConfigurationRequest) -> dict[str, Any]:
    """The JSON form of ``request``; absent parts are null."""
    document: dict[str, Any] = dict.fromkeys(PARTS)
    if request.HasField("container_config"):
        document["container_config"] = {"enabled": request.container_config.enabled}
    if request.HasField("execute_config"):
        execute = request.execute_config
        document["execute_config"] = {
            "enabled": execute.enabled,
            "argv_limit": execute.argv_limit,
            "envp_limit": execute.envp_limit,
            "envp_allowlist": list(execute.envp_allowlist),
        }
    if request.HasField("memexec_config"):
        document["memexec_config"] = {"enabled": request.memexec_config.enabled}
    return document
