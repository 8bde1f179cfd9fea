"""Per-VM counters and the causes of dropped events."""

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class DropCause(enum.StrEnum):
    """Why an event that reached the receiver was not stored."""

    HOST_QUEUE_FULL = "host_queue_full"
    UNUSABLE_EVENT = "unusable_event"
    STORE_REJECTED = "store_rejected"
    BOOT_LIMIT = "boot_limit"
    CONTAINER_LIMIT = "container_limit"
    EXEC_SESSION_LIMIT = "exec_session_limit"


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
    refused_connections: int = 0
    idle_closed: int = 0
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
            "refused_connections": self.refused_connections,
            "idle_closed": self.idle_closed,
            "drops": {str(cause): self.drops[cause] for cause in DropCause}
            | dict(self.drops),
        }
