"""The agent's counters, as the original kernel's ``stats`` file kept them."""

import enum
from dataclasses import asdict, dataclass, field


class DropCause(enum.Enum):
    """Why an event never reached the host."""

    QUEUE_FULL = "queue_full"
    DISCONNECTED = "disconnected"
    COLLECTORS_OFF = "collectors_off"
    LOCAL_READER_SLOW = "local_reader_slow"


@dataclass(slots=True)
class Counters:
    """Counters of one agent run; reset when every collector is turned off."""

    events_encoded: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    proto_encoding_failed: int = 0
    event_writing_failed: int = 0
    connects: int = 0
    config_requests: int = 0
    config_errors: int = 0
    queue_high_water: int = 0
    proc_vanished: int = 0
    drops: dict[str, int] = field(
        default_factory=lambda: {cause.value: 0 for cause in DropCause}
    )

    def drop(self, cause: DropCause, count: int = 1) -> None:
        """Count events lost for one cause."""
        self.drops[cause.value] += count

    def reset(self) -> None:
        """Zero every counter."""
        fresh = Counters()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return asdict(self)
