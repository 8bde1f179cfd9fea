"""What an event source reports, the same for every backend, before enrichment.

Times are nanoseconds of CLOCK_BOOTTIME, as the kernel keeps them; the
enrichment stage turns them into wall-clock time and UUIDs.
"""

import enum
from dataclasses import dataclass, field


class MemexecAction(enum.IntEnum):
    """How a file became executable in memory (the wire's MemoryExecEvent.Action)."""

    MPROTECT = 1
    MMAP_FILE = 2


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """One end of an IP socket: family, address bytes in network order, port."""

    family: int
    ip: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Writer:
    """The first containerised writer of a file: its tgid and leader start."""

    tgid: int
    start_ns: int


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file as the kernel saw it: path, inode, mode, overlay layer, socket ends."""

    path: bytes
    ino: int = 0
    dev: int = 0
    mode: int = 0
    overlay: bool = False
    upper: bool = False
    lower: bool = False
    writer: Writer | None = None
    socket_family: int = 0
    local: SocketAddress | None = None
    remote: SocketAddress | None = None


@dataclass(frozen=True, slots=True)
class ProcIds:
    """Identity of a process and its parent, with its pid namespace."""

    tgid: int
    ppid: int
    start_ns: int
    parent_start_ns: int
    pidns_inum: int = 0
    pidns_level: int = 0
    ns_pid: int = 0
    ns_ppid: int = 0


@dataclass(frozen=True, slots=True)
class RawExec:
    """A process image replaced: binary, arguments and fds 0-2."""

    boot_ns: int
    ids: ProcIds
    binary: FileRef
    argv: list[bytes]
    envp: list[bytes]
    fds: tuple[FileRef | None, FileRef | None, FileRef | None]
    # Bytes the kernel had that the capture could not hold.
    argv_missing_bytes: int = 0
    envp_missing_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RawFork:
    """A new thread-group leader."""

    boot_ns: int
    ids: ProcIds


@dataclass(frozen=True, slots=True)
class RawExit:
    """The last thread of a process has exited."""

    boot_ns: int
    tgid: int
    start_ns: int
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class RawMemexec:
    """A file mapped or mprotected executable."""

    boot_ns: int
    ids: ProcIds
    action: MemexecAction
    file: FileRef
    prot: int = 0
    reqprot: int = 0
    old_vm_flags: int = 0
    mmap_flags: int = 0
    start: int = 0
    end: int = 0


@dataclass(frozen=True, slots=True)
class RawWrite:
    """The first containerised write to an upper-layer overlay file."""

    boot_ns: int
    ids: ProcIds
    file: FileRef


RawEvent = RawExec | RawFork | RawExit | RawMemexec | RawWrite


@dataclass(slots=True)
class SourceCounters:
    """Losses an event source knows about, by cause."""

    ring_full: int = 0
    argv_faults: int = 0
    envp_faults: int = 0
    writers_recorded: int = 0
    undecodable: int = 0
    extra: dict[str, int] = field(default_factory=dict)
