"""What the receiver knows about each VM while it runs: health and counters."""

import enum
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from receiver.logs import WarningLimiter
from receiver.settings import VmSpec

if TYPE_CHECKING:
    from receiver.sessions.session import GuestSession


class VmHealth(enum.Enum):
    """A VM's connection lifecycle as operators see it."""

    DISCONNECTED = "disconnected"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class DropCause(enum.StrEnum):
    """Why an event that reached the receiver was not stored."""

    HOST_QUEUE_FULL = "host_queue_full"
    UNUSABLE_EVENT = "unusable_event"
    STORE_REJECTED = "store_rejected"


@dataclass(slots=True)
class VmCounters:
    """Per-VM traffic and error counters since the receiver started."""

    connections: int = 0
    frames: int = 0
    bytes: int = 0
    events: int = 0
    heartbeats: int = 0
    config_responses: int = 0
    decode_errors: int = 0
    unknown_frame_types: int = 0
    framing_errors: int = 0
    truncated_frames: int = 0
    drops: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The counters as the API shows them."""
        return {
            "connections": self.connections,
            "frames": self.frames,
            "bytes": self.bytes,
            "events": self.events,
            "heartbeats": self.heartbeats,
            "config_responses": self.config_responses,
            "decode_errors": self.decode_errors,
            "unknown_frame_types": self.unknown_frame_types,
            "framing_errors": self.framing_errors,
            "truncated_frames": self.truncated_frames,
            "drops": {str(cause): self.drops[cause] for cause in DropCause}
            | dict(self.drops),
        }


@dataclass(slots=True, eq=False)
class VmState:
    """One VM: its identity, its live sessions and its counters."""

    vm_id: int
    spec: VmSpec
    counters: VmCounters = field(default_factory=VmCounters)
    sessions: set["GuestSession"] = field(default_factory=set)
    last_heartbeat: float | None = None
    protocol: str | None = None
    unhealthy: bool = False
    config_response: dict[str, Any] | None = None
    warnings: WarningLimiter = field(default_factory=WarningLimiter)

    @property
    def name(self) -> str:
        """The operator's name for the VM."""
        return self.spec.name

    @property
    def health(self) -> VmHealth:
        """Connected and beating, connected but silent, or gone."""
        if not self.sessions:
            return VmHealth.DISCONNECTED
        return VmHealth.UNHEALTHY if self.unhealthy else VmHealth.HEALTHY

    def warn(
        self, logger: logging.Logger, cause: str, message: str, *args: object
    ) -> None:
        """Log a warning about this VM, at most once per cause and interval."""
        self.warnings.warning(logger, self.name, cause, message, *args)

    def note_heartbeat(self) -> None:
        """Record a heartbeat now."""
        self.last_heartbeat = time.time()
        self.unhealthy = False
