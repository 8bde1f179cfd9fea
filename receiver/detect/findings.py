"""What a detection produces: a finding about one process, and its JSON."""

import enum
from dataclasses import dataclass, field
from typing import Any

from receiver.store.codec import u64_from_db
from receiver.timefmt import format_ns


class Severity(enum.StrEnum):
    """How urgently an operator should look, lowest first."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class BuiltinKind(enum.StrEnum):
    """The kinds of finding the receiver detects without any rules."""

    ADDED_BINARY_EXECUTED = "added_binary_executed"
    ADDED_LIBRARY_LOADED = "added_library_loaded"
    REVERSE_SHELL = "reverse_shell"
    EXEC_SESSION_STARTED = "exec_session_started"


BUILTIN_SEVERITY = {
    BuiltinKind.ADDED_BINARY_EXECUTED: Severity.HIGH,
    BuiltinKind.ADDED_LIBRARY_LOADED: Severity.HIGH,
    BuiltinKind.REVERSE_SHELL: Severity.CRITICAL,
    BuiltinKind.EXEC_SESSION_STARTED: Severity.INFO,
}


@dataclass(slots=True)
class Finding:
    """One detection about one process; (vm, boot, uuid, kind) identifies it."""

    vm_id: int
    vm: str
    boot: int
    uuid: bytes
    kind: str
    severity: Severity
    at: int
    container_id: int | None
    exec_session_id: int | None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def key(self) -> tuple[int, int, bytes, str]:
        """The deduplication key: one finding per process and kind."""
        return (self.vm_id, self.boot, self.uuid, self.kind)

    def as_json(self) -> dict[str, Any]:
        """The finding as the API, the live feed and the webhook show it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": str(self.severity),
            "vm": self.vm,
            "boot": f"{self.boot:08x}",
            "process_uuid": self.uuid.hex(),
            "at": format_ns(self.at),
            "container_id": _unsigned(self.container_id),
            "exec_session_id": _unsigned(self.exec_session_id),
            "details": self.details,
        }


def _unsigned(value: int | None) -> int:
    return u64_from_db(value) if value is not None else 0
