"""One simulated guest boot: it mints CSM UUIDs and builds the events a CSM
kernel would send for its processes and containers."""

import random
import struct
import time
from dataclasses import dataclass, field

from csm_wire.gen import schema_pb2 as pb

# 16 bytes, little-endian: machine id, leader start time (ns), tgid.
UUID_LAYOUT = struct.Struct("<IQI")
PID_MAX = 4_194_304
# 2025-11-24, where synthetic clocks start (plus a per-boot offset).
SYNTHETIC_EPOCH_NS = 1_764_000_000_000_000_000
FIRST_DYNAMIC_PID = 300
S_IFCHR_TTY = 0o020620
S_IFIFO = 0o010600
S_IFSOCK = 0o140777
AF_INET = 2

BASE_ENV = (b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", b"HOME=/root")


class Clock:
    """Wall-clock nanoseconds that never repeat.

    In real time it follows the host clock; otherwise it starts at a fixed
    epoch and advances by a few microseconds a tick, so a seed repeats the
    exact stream and pre-generated streams need no sleeping.
    """

    def __init__(self, rng: random.Random, *, real_time: bool) -> None:
        self._rng = rng
        self._real_time = real_time
        self._last = time.time_ns() if real_time else SYNTHETIC_EPOCH_NS

    def now(self) -> int:
        """The next timestamp, strictly after the previous one."""
        if self._real_time:
            self._last = max(self._last + 1, time.time_ns())
        else:
            self._last += self._rng.randint(1_000, 40_000)
        return self._last


@dataclass(slots=True, eq=False)
class SimContainer:
    """A container of the guest: its CSM id and pod metadata."""

    container_id: int
    pod_namespace: bytes
    pod_name: bytes
    name: bytes
    image: bytes
    labels: tuple[bytes, ...] = ()
    next_pid: int = 1
    init: "SimProcess | None" = None

    def allocate_pid(self) -> int:
        """The next pid inside the container's pid namespace."""
        pid = self.next_pid
        self.next_pid += 1
        return pid


@dataclass(slots=True, eq=False)
class SimProcess:
    """A live process of the simulated guest."""

    uuid: bytes
    pid: int
    parent: "SimProcess | None"
    binary: bytes = b""
    container: SimContainer | None = None
    container_pid: int = 0
    exec_session_id: int = 0
    on_image: bool = False
    children: list["SimProcess"] = field(default_factory=list)


class GuestBoot:
    """The kernel side of one guest boot: pids, UUIDs and event encoding."""

    def __init__(self, rng: random.Random, clock: Clock) -> None:
        self.rng = rng
        self.clock = clock
        # A random machine id per boot, never 0 (the CSM layout's rule).
        self.machine_id = rng.randrange(1, 2**32)
        self._next_pid = FIRST_DYNAMIC_PID
        self._next_tag = 1
        self.uuids: list[bytes] = []

    def mint_uuid(self, pid: int, start_ns: int) -> bytes:
        """The CSM UUID of a thread-group leader."""
        uuid = UUID_LAYOUT.pack(self.machine_id, start_ns, pid)
        self.uuids.append(uuid)
        return uuid

    def allocate_pid(self) -> int:
        """The next free tgid, wrapping like the kernel's pid allocator."""
        pid = self._next_pid
        self._next_pid = pid + 1 if pid + 1 < PID_MAX else FIRST_DYNAMIC_PID
        return pid

    def allocate_tag(self) -> int:
        """The next CSM container tag: a container id or an exec session."""
        tag = self._next_tag
        self._next_tag += 1
        return tag

    def new_container(
        self, namespace: str, pod: str, name: str, image: str, labels: tuple[str, ...]
    ) -> SimContainer:
        """A container that will be tagged at its init's exec."""
        return SimContainer(
            self.allocate_tag(),
            namespace.encode(),
            pod.encode(),
            name.encode(),
            image.encode(),
            tuple(label.encode() for label in labels),
        )

    def _proc(self, process: SimProcess, *, details: bool) -> pb.Process:
        proc = pb.Process(uuid=process.uuid, pid=process.pid)
        if process.parent is not None:
            proc.parent_uuid = process.parent.uuid
            proc.parent_pid = process.parent.pid
        if not details:
            return proc
        proc.binary.fullpath = process.binary
        proc.binary.ino = self.rng.randrange(1, 2**24)
        if process.container is not None:
            proc.container_id = process.container.container_id
            proc.container_pid = process.container_pid
            parent = process.parent
            if parent is not None and parent.container is process.container:
                proc.container_parent_pid = parent.container_pid
            proc.binary.overlayfs.lower_layer = process.on_image
            proc.binary.overlayfs.upper_layer = not process.on_image
        proc.exec_session_id = process.exec_session_id
        return proc

    def existing(
        self, binary: str, parent: SimProcess | None = None, pid: int | None = None
    ) -> tuple[SimProcess, pb.Event]:
        """A process found running when monitoring started (enumproc)."""
        pid = self.allocate_pid() if pid is None else pid
        process = SimProcess(
            self.mint_uuid(pid, self.clock.now()), pid, parent, binary.encode()
        )
        if parent is not None:
            parent.children.append(process)
        event = pb.Event(timestamp=self.clock.now())
        event.enumproc.proc.CopyFrom(self._proc(process, details=True))
        return process, event

    def fork(self, parent: SimProcess) -> tuple[SimProcess, pb.Event]:
        """A new process cloned from ``parent``; clone carries only UUIDs."""
        pid = self.allocate_pid()
        child = SimProcess(
            self.mint_uuid(pid, self.clock.now()),
            pid,
            parent,
            parent.binary,
            parent.container,
            exec_session_id=parent.exec_session_id,
            on_image=parent.on_image,
        )
        if child.container is not None:
            child.container_pid = child.container.allocate_pid()
        parent.children.append(child)
        event = pb.Event(timestamp=self.clock.now())
        event.clone.proc.uuid = child.uuid
        event.clone.proc.parent_uuid = parent.uuid
        return child, event

    def execute(
        self,
        process: SimProcess,
        binary: str,
        argv: list[str],
        *,
        env: tuple[bytes, ...] = BASE_ENV,
        streams: pb.Streams | None = None,
        on_image: bool = True,
        written_by: SimProcess | None = None,
    ) -> pb.Event:
        """``process`` execs ``binary``; execute carries everything."""
        process.binary = binary.encode()
        process.on_image = on_image
        proc = self._proc(process, details=True)
        if written_by is not None:
            proc.binary.overlayfs.modified_uuid = written_by.uuid
        proc.creation_timestamp = self.clock.now()
        proc.args.argv.extend(arg.encode() for arg in argv)
        proc.args.envp.extend(env)
        if streams is not None:
            proc.streams.CopyFrom(streams)
        event = pb.Event(timestamp=self.clock.now())
        event.execute.proc.CopyFrom(proc)
        return event

    def spawn(
        self,
        parent: SimProcess,
        binary: str,
        argv: list[str],
        *,
        streams: pb.Streams | None = None,
        on_image: bool = True,
        written_by: SimProcess | None = None,
    ) -> tuple[SimProcess, list[pb.Event]]:
        """Fork and exec: the two events of a new program."""
        child, clone = self.fork(parent)
        run = self.execute(
            child,
            binary,
            argv,
            streams=streams,
            on_image=on_image,
            written_by=written_by,
        )
        return child, [clone, run]

    def exit(self, process: SimProcess) -> pb.Event:
        """``process`` exits; exit carries only its UUID."""
        if process.parent is not None and process in process.parent.children:
            process.parent.children.remove(process)
        event = pb.Event(timestamp=self.clock.now())
        event.exit.process_uuid = process.uuid
        return event

    def container_info(self, container: SimContainer) -> pb.Event:
        """The pod metadata of a container whose init has started."""
        event = pb.Event(timestamp=self.clock.now())
        info = event.container.container
        info.creation_timestamp = self.clock.now()
        info.container_id = container.container_id
        info.pod_namespace = container.pod_namespace
        info.pod_name = container.pod_name
        info.container_name = container.name
        info.container_image_uri = container.image
        info.labels.extend(container.labels)
        if container.init is not None:
            info.init_uuid = container.init.uuid
        return event

    def memexec(
        self, process: SimProcess, path: str, *, added: bool, initial: bool
    ) -> pb.Event:
        """An executable mapping of ``path`` by ``process``."""
        event = pb.Event(timestamp=self.clock.now())
        memexec = event.memexec
        memexec.proc.CopyFrom(self._proc(process, details=False))
        memexec.proc.ClearField("parent_uuid")
        memexec.proc.ClearField("parent_pid")
        if process.container is not None:
            memexec.proc.container_id = process.container.container_id
        memexec.proc.exec_session_id = process.exec_session_id
        memexec.prot_exec_timestamp = self.clock.now()
        memexec.action = pb.MemoryExecEvent.MMAP_FILE
        memexec.new_flags = memexec.req_flags = 4
        memexec.mmap_flags = 2
        memexec.mapped_file.fullpath = path.encode()
        memexec.mapped_file.overlayfs.upper_layer = added
        memexec.mapped_file.overlayfs.lower_layer = not added
        memexec.start_addr = 0x7F0000000000 + self.rng.randrange(2**32) * 4096
        memexec.end_addr = memexec.start_addr + 0x21000
        memexec.is_initial_mmap = initial
        return event


def tty_streams() -> pb.Streams:
    """Stdin, stdout and stderr on a pseudo-terminal."""
    streams = pb.Streams()
    for descriptor in (streams.stdin, streams.stdout, streams.stderr):
        descriptor.mode = S_IFCHR_TTY
        descriptor.file.fullpath = b"/dev/pts/0"
    return streams


def pipe_streams() -> pb.Streams:
    """Standard streams on pipes, as under a supervisor."""
    streams = pb.Streams()
    for descriptor in (streams.stdin, streams.stdout, streams.stderr):
        descriptor.mode = S_IFIFO
    return streams


def socket_streams(local_port: int, remote: bytes, remote_port: int) -> pb.Streams:
    """Stdin and stdout on a connected TCP socket: a reverse shell."""
    streams = pb.Streams()
    for descriptor in (streams.stdin, streams.stdout):
        descriptor.mode = S_IFSOCK
        sock = descriptor.file.socket
        sock.local.family = AF_INET
        sock.local.ip = bytes([10, 0, 0, 5])
        sock.local.port = local_port
        sock.remote.family = AF_INET
        sock.remote.ip = remote
        sock.remote.port = remote_port
    streams.stderr.mode = S_IFCHR_TTY
    return streams
