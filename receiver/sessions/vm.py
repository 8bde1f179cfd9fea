"""What the receiver knows about each VM while it runs: health and counters."""

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from receiver.logs import WarningLimiter
from receiver.sessions.accounting import VmDelivery
from receiver.sessions.counters import DropCause, VmCounters
from receiver.sessions.limits import IdentityTracker
from receiver.settings import GuestLimits, VmSpec

if TYPE_CHECKING:
    from receiver.sessions.session import GuestSession


__all__ = ["DropCause", "GuestLimits", "VmCounters", "VmHealth", "VmState"]


class VmHealth(enum.Enum):
    """A VM's connection lifecycle as operators see it."""

    DISCONNECTED = "disconnected"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


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
    identities: IdentityTracker = field(default_factory=IdentityTracker)
    delivery: VmDelivery = field(default_factory=VmDelivery)

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

    def pause_reading(self) -> None:
        """Stop reading this VM's connections until :meth:`resume_reading`."""
        if self.delivery.paused:
            return
        self.delivery.paused = True
        self.delivery.pauses += 1
        for session in self.sessions:
            session.pause_reading()

    def resume_reading(self) -> None:
        """Read this VM's connections again."""
        if not self.delivery.paused:
            return
        self.delivery.paused = False
        for session in list(self.sessions):
            session.resume_reading()
