"""The live process table: UUIDs, parent links, container tags and exec sessions.

Container ids follow CSM: a process is tagged at exec when it runs outside
the init pid namespace from an overlayfs executable and has no tag yet;
children inherit the tag; the first tag seen in a pid namespace becomes that
namespace's container id. A process whose tag differs from its namespace's
id entered from outside and carries the tag as its exec session id.
"""

import logging
from dataclasses import dataclass

from guest_lsm.enrich.identity import Identity
from guest_lsm.raw import FileRef, ProcIds

logger = logging.getLogger(__name__)

# Bounds memory if exits are lost; pid_max is 4M at most.
MAX_PROCESSES = 1 << 22


@dataclass(slots=True)
class ProcessState:
    """What the agent remembers about one live process."""

    tgid: int
    start_ns: int
    uuid: bytes
    ppid: int
    parent_uuid: bytes
    pidns_inum: int
    pidns_level: int
    ns_pid: int
    ns_ppid: int
    tag: int = 0
    binary: FileRef | None = None


@dataclass(frozen=True, slots=True)
class Membership:
    """A process's container id and exec session id (0 when none)."""

    container_id: int
    exec_session_id: int


@dataclass(frozen=True, slots=True)
class NewContainer:
    """A pid namespace got its container id: the tag of its first tagged process."""

    container_id: int
    pidns_inum: int
    init: ProcessState


class ProcessTable:
    """Processes by tgid, with the per-boot container counter."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._by_tgid: dict[int, ProcessState] = {}
        self._ns_ids: dict[int, int] = {}
        self._next_tag = 1

    def __len__(self) -> int:
        return len(self._by_tgid)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_tgid.values()))

    def get(self, tgid: int) -> ProcessState | None:
        """The live process with this tgid, if known."""
        return self._by_tgid.get(tgid)

    def _state(self, ids: ProcIds) -> ProcessState:
        return ProcessState(
            tgid=ids.tgid,
            start_ns=ids.start_ns,
            uuid=self._identity.uuid(ids.tgid, ids.start_ns),
            ppid=ids.ppid,
            parent_uuid=self.parent_uuid(ids),
            pidns_inum=ids.pidns_inum,
            pidns_level=ids.pidns_level,
            ns_pid=ids.ns_pid,
            ns_ppid=ids.ns_ppid,
        )

    def parent_uuid(self, ids: ProcIds) -> bytes:
        """UUID of the parent: the table's if known, else minted from the ids."""
        parent = self._by_tgid.get(ids.ppid)
        if parent is not None and self._same_start(parent, ids.parent_start_ns):
            return parent.uuid
        if not ids.ppid:
            return b""
        return self._identity.uuid(ids.ppid, ids.parent_start_ns)

    def _same_start(self, state: ProcessState, start_ns: int) -> bool:
        uuid = self._identity.uuid(state.tgid, start_ns)
        return not start_ns or uuid == state.uuid

    def _current(self, ids: ProcIds) -> ProcessState | None:
        state = self._by_tgid.get(ids.tgid)
        if state is None or not self._same_start(state, ids.start_ns):
            return None
        return state

    def _insert(self, state: ProcessState) -> ProcessState:
        if len(self._by_tgid) >= MAX_PROCESSES and state.tgid not in self._by_tgid:
            self._by_tgid.pop(next(iter(self._by_tgid)))
        self._by_tgid[state.tgid] = state
        return state

    def track(self, ids: ProcIds) -> ProcessState:
        """Return the known process for these ids, adding it if it is new."""
        state = self._current(ids)
        if state is not None:
            return state
        state = self._state(ids)
        parent = self._by_tgid.get(ids.ppid)
        if parent is not None and parent.uuid == state.parent_uuid:
            state.tag = parent.tag
        return self._insert(state)

    def on_fork(self, ids: ProcIds) -> ProcessState:
        """A new process: it inherits its parent's tag."""
        self._by_tgid.pop(ids.tgid, None)
        return self.track(ids)

    def on_exec(self, ids: ProcIds, binary: FileRef) -> NewContainer | None:
        """A process ran a new image; tag it if it qualifies."""
        state = self.track(ids)
        state.binary = binary
        state.ppid = ids.ppid
        state.parent_uuid = self.parent_uuid(ids)
        state.pidns_inum, state.ns_pid, state.ns_ppid = (
            ids.pidns_inum,
            ids.ns_pid,
            ids.ns_ppid,
        )
        state.pidns_level = ids.pidns_level
        return self._maybe_tag(state)

    def adopt(self, ids: ProcIds, binary: FileRef | None) -> NewContainer | None:
        """Add a process found in /proc, tagging it as its exec would have."""
        state = self.track(ids)
        state.binary = binary
        return self._maybe_tag(state)

    def _maybe_tag(self, state: ProcessState) -> NewContainer | None:
        qualifies = state.pidns_level > 0 and bool(
            state.binary and state.binary.overlay
        )
        if state.tag or not qualifies:
            return None
        state.tag = self._next_tag
        self._next_tag += 1
        if state.pidns_inum in self._ns_ids:
            return None
        self._ns_ids[state.pidns_inum] = state.tag
        logger.info(
            "container %d: pid namespace %d, first process %d",
            state.tag,
            state.pidns_inum,
            state.tgid,
        )
        return NewContainer(state.tag, state.pidns_inum, state)

    def on_exit(self, tgid: int, start_ns: int) -> ProcessState | None:
        """Forget a process; return it, or None if it was not known."""
        state = self._by_tgid.get(tgid)
        if state is None:
            return None
        if start_ns and not self._same_start(state, start_ns):
            return None
        return self._by_tgid.pop(tgid)

    def membership(self, state: ProcessState) -> Membership:
        """Container id and exec session of a process."""
        container_id = self._ns_ids.get(state.pidns_inum, 0)
        if not container_id:
            return Membership(0, 0)
        session = state.tag if state.tag and state.tag != container_id else 0
        return Membership(container_id, session)

    def container_of_pid(self, tgid: int) -> int:
        """The container id of a live process, 0 if none."""
        state = self._by_tgid.get(tgid)
        return self.membership(state).container_id if state else 0

    def init_of(self, container_id: int) -> ProcessState | None:
        """The live process that gave a container its id, if still alive."""
        for state in self._by_tgid.values():
            if state.tag == container_id and self.membership(state).container_id == (
                container_id
            ):
                return state
        return None
