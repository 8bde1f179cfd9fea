"""Per-VM caps on what a guest can make the receiver keep.

A compromised guest controls every identifier it sends. Machine ids,
container ids and exec session ids each create rows (and, for detection,
state), so each is capped per VM; events beyond a cap are dropped and
counted for that VM only.
"""

from dataclasses import dataclass, field

from receiver.ingest.records import EventRecord
from receiver.sessions.counters import DropCause
from receiver.settings import GuestLimits


@dataclass(slots=True)
class IdentityTracker:
    """The identifiers one VM has used, bounded by :class:`GuestLimits`."""

    limits: GuestLimits = field(default_factory=GuestLimits)
    _containers: dict[int, set[int]] = field(default_factory=dict)
    _sessions: dict[int, set[int]] = field(default_factory=dict)

    def admit(self, record: EventRecord) -> DropCause | None:
        """None if ``record`` stays within the caps, else why it is dropped."""
        containers = self._containers.get(record.boot)
        if containers is None:
            if len(self._containers) >= self.limits.max_boots:
                return DropCause.BOOT_LIMIT
            containers = self._containers[record.boot] = set()
            self._sessions[record.boot] = set()
        process = record.process
        container_id = (
            record.container_row["container_id"]
            if record.container_row is not None
            else process.container_id
            if process is not None
            else None
        )
        if container_id and container_id not in containers:
            if len(containers) >= self.limits.max_containers_per_boot:
                return DropCause.CONTAINER_LIMIT
            containers.add(container_id)
        session_id = process.exec_session_id if process is not None else None
        sessions = self._sessions[record.boot]
        if session_id and session_id not in sessions:
            if len(sessions) >= self.limits.max_exec_sessions_per_boot:
                return DropCause.EXEC_SESSION_LIMIT
            sessions.add(session_id)
        return None
