"""Turn decoded CSM events into the rows the store merges.

Everything a guest says is checked here, once, before it reaches the store:
UUIDs must be 16 bytes with a non-zero machine id, and every value keeps the
exact bytes the guest sent.
"""

import enum
import ipaddress
import json
import stat
import struct
from dataclasses import dataclass, field, fields
from typing import Any

from csm_wire.gen import schema_pb2 as pb
from receiver.store.codec import pack_optional_list, u64_to_db

UUID_BYTES = 16
UUID_LAYOUT = struct.Struct("<IQI")


class RecordError(ValueError):
    """An event whose content is unusable (for example a malformed UUID)."""


class Layer(enum.StrEnum):
    """Where a file comes from in an overlay filesystem."""

    IMAGE = "image"
    ADDED = "added"
    MODIFIED = "modified"


@dataclass(frozen=True, slots=True)
class ProcessUuid:
    """The three parts of a CSM process UUID."""

    machine_id: int
    start_ns: int
    tgid: int

    @classmethod
    def parse(cls, raw: bytes) -> "ProcessUuid":
        """Split a 16-byte UUID; raise RecordError if it cannot be one."""
        return cls(*split_uuid(raw))


def split_uuid(raw: bytes) -> tuple[int, int, int]:
    """(machine id, start ns, tgid) of a UUID; raise RecordError if unusable."""
    if len(raw) != UUID_BYTES:
        raise RecordError(f"process UUID has {len(raw)} bytes, not 16")
    parts: tuple[int, int, int] = UUID_LAYOUT.unpack(raw)
    if parts[0] == 0:
        raise RecordError("process UUID has machine id 0")
    return parts


def optional_uuid(raw: bytes) -> bytes | None:
    """Return a well-formed UUID, or None for an absent or malformed one."""
    return raw if len(raw) == UUID_BYTES and raw != bytes(UUID_BYTES) else None


def overlay_layer(file: pb.File) -> str | None:
    """Classify a file by its overlay flags; None when not on overlayfs."""
    return file_origin(file)[0]


def written_by(file: pb.File) -> bytes | None:
    """Return the UUID of the first containerised writer of ``file``."""
    return file_origin(file)[1]


def file_origin(file: pb.File) -> tuple[str | None, bytes | None]:
    """A file's overlay layer and its first containerised writer, at once."""
    if file.WhichOneof("filesystem") != "overlayfs":
        return None, None
    overlay = file.overlayfs
    lower = overlay.lower_layer
    if overlay.upper_layer:
        layer: str | None = Layer.MODIFIED if lower else Layer.ADDED
    else:
        layer = Layer.IMAGE if lower else None
    return layer, optional_uuid(overlay.modified_uuid)


def _socket_address(address: pb.SocketIp) -> dict[str, Any]:
    ip: str
    try:
        if address.family == 2 and len(address.ip) == 4:
            ip = str(ipaddress.IPv4Address(address.ip))
        elif address.family == 10 and len(address.ip) == 16:
            ip = str(ipaddress.IPv6Address(address.ip))
        else:
            ip = address.ip.hex()
    except ValueError:
        ip = address.ip.hex()
    return {"family": address.family, "ip": ip, "port": address.port}


def _descriptor_kind(descriptor: pb.Descriptor, path: bytes) -> str:
    mode = descriptor.mode
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISCHR(mode):
        tty = path.startswith((b"/dev/pts/", b"/dev/tty", b"/dev/console"))
        return "tty" if tty else "char"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISBLK(mode):
        return "block"
    return "none" if mode == 0 else "other"


def describe_descriptor(descriptor: pb.Descriptor) -> dict[str, Any]:
    """Describe one of fds 0-2 as the API shows it."""
    file = descriptor.file
    path = file.fullpath
    result: dict[str, Any] = {
        "kind": _descriptor_kind(descriptor, path),
        "mode": descriptor.mode,
    }
    if path:
        result["path"] = path.decode("utf-8", "backslashreplace")
    if file.WhichOneof("filesystem") == "socket":
        result["local"] = _socket_address(file.socket.local)
        if file.socket.HasField("remote"):
            result["remote"] = _socket_address(file.socket.remote)
    return result


def describe_streams(streams: pb.Streams) -> str:
    """Return the JSON column describing stdin, stdout and stderr."""
    described = {
        name: describe_descriptor(getattr(streams, name))
        for name in ("stdin", "stdout", "stderr")
        if streams.HasField(name)
    }
    return json.dumps(described, separators=(",", ":"))


# Fields that describe what a process runs; the newest exec decides them.
DETAIL_FIELDS = (
    "parent_uuid",
    "parent_pid",
    "binary",
    "binary_ino",
    "binary_layer",
    "binary_written_by",
    "argv",
    "envp",
    "container_id",
    "container_pid",
    "container_parent_pid",
    "exec_session_id",
    "streams",
)


@dataclass(slots=True)
class ProcessPatch:
    """What one or more events say about one process.

    Patches merge commutatively: the newest exec decides the details, other
    events only fill what is still unknown, and the first exit time stays.
    The store applies the same rule when a patch meets a stored row.
    """

    vm_id: int
    boot: int
    uuid: bytes
    pid: int
    started_at: int
    parent_uuid: bytes | None = None
    parent_pid: int | None = None
    binary: bytes | None = None
    binary_ino: int | None = None
    binary_layer: str | None = None
    binary_written_by: bytes | None = None
    argv: bytes | None = None
    envp: bytes | None = None
    container_id: int | None = None
    container_pid: int | None = None
    container_parent_pid: int | None = None
    exec_session_id: int | None = None
    streams: str | None = None
    exec_at: int | None = None
    exited_at: int | None = None
    exit_status: int | None = None

    @property
    def key(self) -> tuple[int, int, bytes]:
        """The process's identity in the store."""
        return (self.vm_id, self.boot, self.uuid)

    def merge(self, other: "ProcessPatch") -> None:
        """Fold ``other`` (same key) into this patch."""
        if other.exec_at is not None and other.exec_at >= (self.exec_at or 0):
            for name in DETAIL_FIELDS:
                setattr(self, name, getattr(other, name))
            self.exec_at = other.exec_at
        else:
            for name in DETAIL_FIELDS:
                if getattr(self, name) is None:
                    setattr(self, name, getattr(other, name))
        if self.exited_at is None:
            self.exited_at = other.exited_at
        if self.exit_status is None:
            self.exit_status = other.exit_status

    def as_row(self) -> dict[str, Any]:
        """The patch as a row for the processes table."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class EventRecord:
    """The rows one guest event produces."""

    kind: str
    boot: int
    at: int
    uuid: bytes | None
    process: ProcessPatch | None = None
    exec_row: dict[str, Any] | None = None
    memexec_row: dict[str, Any] | None = None
    container_row: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _process_patch(vm_id: int, proc: pb.Process, *, with_details: bool) -> ProcessPatch:
    # Every event goes through here: the UUID is checked without building
    # a ProcessUuid, and each protobuf field is read once.
    uuid = proc.uuid
    boot, start_ns, tgid = split_uuid(uuid)
    patch = ProcessPatch(
        vm_id,
        boot,
        uuid,
        proc.pid or tgid,
        u64_to_db(start_ns),
        optional_uuid(proc.parent_uuid),
    )
    if not with_details:
        return patch
    patch.parent_pid = proc.parent_pid or None
    patch.container_id = u64_to_db(proc.container_id)
    patch.container_pid = proc.container_pid
    patch.container_parent_pid = proc.container_parent_pid
    patch.exec_session_id = u64_to_db(proc.exec_session_id)
    if proc.HasField("binary"):
        binary = proc.binary
        patch.binary = binary.fullpath
        patch.binary_ino = binary.ino
        patch.binary_layer, patch.binary_written_by = file_origin(binary)
    return patch


def _execute(vm_id: int, event: pb.Event) -> EventRecord:
    proc = event.execute.proc
    patch = _process_patch(vm_id, proc, with_details=True)
    patch.exec_at = u64_to_db(proc.creation_timestamp or event.timestamp)
    patch.argv = pack_optional_list(proc.args.argv)
    patch.envp = pack_optional_list(proc.args.envp)
    if proc.HasField("streams"):
        patch.streams = describe_streams(proc.streams)
    exec_row = {
        "vm_id": vm_id,
        "boot": patch.boot,
        "uuid": patch.uuid,
        "at": patch.exec_at,
        "pid": patch.pid,
        "binary": patch.binary,
        "binary_layer": patch.binary_layer,
        "binary_written_by": patch.binary_written_by,
        "argv": patch.argv,
        "envp": patch.envp,
        "streams": patch.streams,
    }
    return EventRecord(
        "execute", patch.boot, u64_to_db(event.timestamp), patch.uuid, patch, exec_row
    )


def _enumerate(vm_id: int, event: pb.Event) -> EventRecord:
    patch = _process_patch(vm_id, event.enumproc.proc, with_details=True)
    return EventRecord(
        "enumproc", patch.boot, u64_to_db(event.timestamp), patch.uuid, patch
    )


def _clone(vm_id: int, event: pb.Event) -> EventRecord:
    patch = _process_patch(vm_id, event.clone.proc, with_details=False)
    return EventRecord(
        "clone", patch.boot, u64_to_db(event.timestamp), patch.uuid, patch
    )


def _exit(vm_id: int, event: pb.Event) -> EventRecord:
    uuid = event.exit.process_uuid
    boot, start_ns, tgid = split_uuid(uuid)
    at = u64_to_db(event.timestamp)
    patch = ProcessPatch(vm_id, boot, uuid, tgid, u64_to_db(start_ns))
    patch.exited_at = at
    if event.exit.HasField("exit_status"):
        patch.exit_status = event.exit.exit_status
    return EventRecord("exit", boot, at, uuid, patch)


def _memexec(vm_id: int, event: pb.Event) -> EventRecord:
    memexec = event.memexec
    patch = _process_patch(vm_id, memexec.proc, with_details=True)
    mapped = memexec.mapped_file
    layer, writer = file_origin(mapped)
    at = u64_to_db(memexec.prot_exec_timestamp or event.timestamp)
    row = {
        "vm_id": vm_id,
        "boot": patch.boot,
        "uuid": patch.uuid,
        "at": at,
        "action": memexec.action,
        "path": mapped.fullpath,
        "ino": mapped.ino,
        "layer": layer,
        "written_by": writer,
        "start_addr": u64_to_db(memexec.start_addr),
        "end_addr": u64_to_db(memexec.end_addr),
        "new_flags": u64_to_db(memexec.new_flags),
        "req_flags": u64_to_db(memexec.req_flags),
        "old_vm_flags": u64_to_db(memexec.old_vm_flags),
        "mmap_flags": u64_to_db(memexec.mmap_flags),
        "is_initial_mmap": memexec.is_initial_mmap,
    }
    return EventRecord("memexec", patch.boot, at, patch.uuid, patch, memexec_row=row)


def _container(vm_id: int, event: pb.Event, session_boot: int) -> EventRecord:
    container = event.container.container
    init_uuid = optional_uuid(container.init_uuid)
    boot = session_boot
    if init_uuid is not None:
        boot = ProcessUuid.parse(init_uuid).machine_id
    if boot == 0:
        raise RecordError("container event before any process of its boot")
    row = {
        "vm_id": vm_id,
        "boot": boot,
        "container_id": u64_to_db(container.container_id),
        "created_at": u64_to_db(container.creation_timestamp),
        "pod_namespace": container.pod_namespace,
        "pod_name": container.pod_name,
        "container_name": container.container_name,
        "image": container.container_image_uri,
        "image_id": container.container_image_id or None,
        "labels": pack_optional_list(container.labels),
        "init_uuid": init_uuid,
    }
    return EventRecord(
        "container", boot, u64_to_db(event.timestamp), init_uuid, container_row=row
    )


def record_event(vm_id: int, event: pb.Event, session_boot: int = 0) -> EventRecord:
    """Convert one guest event; raise RecordError if it is unusable.

    ``session_boot`` is the boot last seen on the connection, used for the
    one event type that carries no UUID of its own.
    """
    kind = event.WhichOneof("event")
    if kind == "execute":
        return _execute(vm_id, event)
    if kind == "enumproc":
        return _enumerate(vm_id, event)
    if kind == "clone":
        return _clone(vm_id, event)
    if kind == "exit":
        return _exit(vm_id, event)
    if kind == "memexec":
        return _memexec(vm_id, event)
    if kind == "container":
        return _container(vm_id, event, session_boot)
    raise RecordError(f"event carries no known payload ({kind})")
