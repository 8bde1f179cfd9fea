"""Synthetic CSM v1 streams for detection tests, built with csm_wire."""

import ipaddress
import stat
from dataclasses import dataclass, field

from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_event, encode_heartbeat
from tests.receiver.events import BASE_NS, make_uuid

MACHINE_ID = 0x5EED0042
TTY_MODE = stat.S_IFCHR | 0o620
PIPE_MODE = stat.S_IFIFO | 0o600
SOCKET_MODE = stat.S_IFSOCK | 0o777


def tty() -> pb.Descriptor:
    """A terminal on one of fds 0-2."""
    return pb.Descriptor(mode=TTY_MODE, file=pb.File(fullpath=b"/dev/pts/0"))


def pipe() -> pb.Descriptor:
    """A pipe on one of fds 0-2."""
    return pb.Descriptor(mode=PIPE_MODE, file=pb.File(fullpath=b"pipe:[4242]"))


def _address(ip: str, port: int) -> pb.SocketIp:
    parsed = ipaddress.ip_address(ip)
    family = 2 if parsed.version == 4 else 10
    return pb.SocketIp(family=family, ip=parsed.packed, port=port)


def tcp(remote: str, port: int, local: str = "10.0.0.5") -> pb.Descriptor:
    """A connected TCP socket to ``remote``."""
    socket = pb.Socket(local=_address(local, 40000), remote=_address(remote, port))
    return pb.Descriptor(mode=SOCKET_MODE, file=pb.File(socket=socket))


def listening(local: str = "0.0.0.0", port: int = 21) -> pb.Descriptor:
    """A socket with no peer (listening or unconnected)."""
    return pb.Descriptor(
        mode=SOCKET_MODE, file=pb.File(socket=pb.Socket(local=_address(local, port)))
    )


def overlay(layer: str | None, written_by: bytes = b"") -> pb.Overlay | None:
    """The overlay flags of a file in ``layer`` (None: not on overlayfs)."""
    if layer is None:
        return None
    return pb.Overlay(
        lower_layer=layer in ("image", "modified"),
        upper_layer=layer in ("added", "modified"),
        modified_uuid=written_by,
    )


@dataclass
class GuestStream:
    """One boot's events, in order, as the bytes of one connection."""

    machine_id: int = MACHINE_ID
    now: int = BASE_NS
    frames: list[bytes] = field(default_factory=lambda: [encode_heartbeat()])

    def tick(self) -> int:
        """Advance the guest's clock by one millisecond."""
        self.now += 1_000_000
        return self.now

    def uuid(self, tgid: int) -> bytes:
        """The UUID of process ``tgid`` of this boot."""
        return make_uuid(self.machine_id, BASE_NS + tgid * 1000, tgid)

    def execute(
        self,
        tgid: int,
        binary: str,
        argv: list[str],
        *,
        parent: int | None = None,
        layer: str | None = "image",
        written_by: int | None = None,
        stdin: pb.Descriptor | None = None,
        stdout: pb.Descriptor | None = None,
        container_id: int = 0,
        exec_session_id: int = 0,
    ) -> bytes:
        """Add an execute event; return the process's UUID."""
        at = self.tick()
        file = pb.File(fullpath=binary.encode(), ino=tgid)
        layers = overlay(layer, self.uuid(written_by) if written_by else b"")
        if layers is not None:
            file.overlayfs.CopyFrom(layers)
        streams = pb.Streams()
        if stdin is not None:
            streams.stdin.CopyFrom(stdin)
        if stdout is not None:
            streams.stdout.CopyFrom(stdout)
        process = pb.Process(
            creation_timestamp=at,
            uuid=self.uuid(tgid),
            pid=tgid,
            binary=file,
            parent_pid=parent or 0,
            parent_uuid=self.uuid(parent) if parent else b"",
            container_id=container_id,
            args=pb.ProcessArguments(argv=[a.encode() for a in argv]),
            streams=streams,
            exec_session_id=exec_session_id,
        )
        event = pb.Event(timestamp=at, execute=pb.ExecuteEvent(proc=process))
        self.frames.append(encode_event(event))
        return process.uuid

    def memexec(
        self,
        tgid: int,
        path: str,
        layer: str | None,
        *,
        container_id: int = 0,
        initial: bool = False,
    ) -> None:
        """Add an executable mapping of ``path`` by process ``tgid``."""
        at = self.tick()
        mapped = pb.File(fullpath=path.encode())
        layers = overlay(layer)
        if layers is not None:
            mapped.overlayfs.CopyFrom(layers)
        event = pb.Event(
            timestamp=at,
            memexec=pb.MemoryExecEvent(
                proc=pb.Process(
                    uuid=self.uuid(tgid), pid=tgid, container_id=container_id
                ),
                prot_exec_timestamp=at,
                mapped_file=mapped,
                action=pb.MemoryExecEvent.MMAP_FILE,
                is_initial_mmap=initial,
            ),
        )
        self.frames.append(encode_event(event))

    def container(self, container_id: int, name: str, init_tgid: int) -> None:
        """Add a container's metadata."""
        container = pb.Container(
            creation_timestamp=self.tick(),
            pod_namespace=b"shop",
            pod_name=b"web-1",
            container_id=container_id,
            container_name=name.encode(),
            container_image_uri=b"docker.io/library/" + name.encode() + b":1",
            init_uuid=self.uuid(init_tgid),
        )
        event = pb.Event(
            timestamp=self.now, container=pb.ContainerInfoEvent(container=container)
        )
        self.frames.append(encode_event(event))

    def data(self) -> bytes:
        """The whole stream, and start a fresh one for the next connection."""
        data = b"".join(self.frames)
        self.frames = []
        return data
