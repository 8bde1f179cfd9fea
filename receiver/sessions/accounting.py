"""Per-VM delivery accounting: flow control, duplicates, gaps and their causes."""

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class GapCause(enum.StrEnum):
    """Why events of a VM never reached the store."""

    # The guest said it lost them (its replay buffer overflowed, or its
    # event source did); the size is exact.
    GUEST_OVERFLOW = "guest_overflow"
    # The receiver could not take them (its queue or journal was full).
    HOST_OVERFLOW = "host_overflow"
    # A v1 guest reconnected: whatever it produced in between is gone.
    V1_RECONNECT = "v1_reconnect"
    # A v1 guest stopped heartbeating for a while; events may be missing.
    V1_HEARTBEAT_SILENCE = "v1_heartbeat_silence"
    # A v2 guest skipped sequence numbers without reporting them.
    SEQUENCE_GAP = "sequence_gap"


@dataclass(slots=True)
class Overflow:
    """Consecutive v1 events the host had to drop, reported as one gap."""

    boot: int
    count: int
    first_at: int
    last_at: int


@dataclass(slots=True)
class VmDelivery:
    """Lossless-delivery state of one VM since the receiver started."""

    paused: bool = False
    pauses: int = 0
    duplicates: int = 0
    refused: int = 0
    gaps: Counter[str] = field(default_factory=Counter)
    gap_events: Counter[str] = field(default_factory=Counter)
    guest_counters: dict[str, Any] | None = None
    hello: dict[str, Any] | None = None
    last_v1_close_ns: int | None = None
    last_boot: int = 0
    overflow: Overflow | None = None

    def note_gap(self, cause: str, count: int | None) -> None:
        """Count a gap and, when known, the events it lost."""
        self.gaps[cause] += 1
        if count:
            self.gap_events[cause] += count

    def as_dict(self) -> dict[str, Any]:
        """The VM's delivery state as the API shows it."""
        return {
            "paused": self.paused,
            "pauses": self.pauses,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "gaps": {str(cause): self.gaps[cause] for cause in GapCause}
            | dict(self.gaps),
            "gap_events": {str(cause): self.gap_events[cause] for cause in GapCause}
            | dict(self.gap_events),
            "guest_counters": self.guest_counters,
            "hello": self.hello,
        }
