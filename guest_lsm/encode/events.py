"""Build ``schema.Event`` messages from the process table and kernel events."""

import stat

from csm_wire.gen import schema_pb2 as pb
from guest_lsm.config import CollectorConfig
from guest_lsm.enrich.containers import ContainerMetadata
from guest_lsm.enrich.processes import Membership, ProcessState
from guest_lsm.raw import FileRef, MemexecAction, RawMemexec, SocketAddress

U32_MASK = 0xFFFFFFFF
_ACTIONS = {
    MemexecAction.MPROTECT: pb.MemoryExecEvent.MPROTECT,
    MemexecAction.MMAP_FILE: pb.MemoryExecEvent.MMAP_FILE,
}


def apply_budget(strings: list[bytes], limit: int) -> tuple[list[bytes], int]:
    """Keep strings while their bytes (with NULs) fit ``limit``; return the cut count.

    The string that crosses the budget is cut, as the CSM kernel cuts its copy.
    """
    kept: list[bytes] = []
    used = 0
    for index, value in enumerate(strings):
        cost = len(value) + 1
        if used + cost <= limit:
            kept.append(value)
            used += cost
            continue
        room = limit - used - 1
        if room > 0:
            kept.append(value[:room])
        cut = len(value) - max(room, 0)
        return kept, cut + sum(len(rest) + 1 for rest in strings[index + 1 :])
    return kept, 0


def filter_env(envp: list[bytes], allowlist: list[str]) -> list[bytes]:
    """Keep the variables whose exact name is in the allowlist (empty keeps all)."""
    if not allowlist:
        return envp
    names = {name.encode() for name in allowlist}
    return [entry for entry in envp if entry.partition(b"=")[0] in names]


def _display_path(ref: FileRef) -> bytes:
    if ref.path not in (b"", b"/"):
        return ref.path
    if stat.S_ISFIFO(ref.mode):
        return b"pipe:[%d]" % ref.ino
    if stat.S_ISSOCK(ref.mode):
        return b"socket:[%d]" % ref.ino
    return ref.path


def _socket_ip(address: SocketAddress) -> pb.SocketIp:
    return pb.SocketIp(family=address.family, ip=address.ip, port=address.port)


def file_message(ref: FileRef, writer_uuid: bytes = b"") -> pb.File:
    """A ``schema.File`` with its overlay layer or socket ends."""
    message = pb.File(fullpath=_display_path(ref), ino=ref.ino & U32_MASK)
    if ref.overlay:
        message.overlayfs.CopyFrom(
            pb.Overlay(
                lower_layer=ref.lower,
                upper_layer=ref.upper,
                modified_uuid=writer_uuid,
            )
        )
    elif ref.local is not None:
        message.socket.local.CopyFrom(_socket_ip(ref.local))
        if ref.remote is not None:
            message.socket.remote.CopyFrom(_socket_ip(ref.remote))
    return message


def descriptor_message(ref: FileRef | None) -> pb.Descriptor:
    """A ``schema.Descriptor`` for one of fds 0-2 (empty if it was closed)."""
    if ref is None:
        return pb.Descriptor()
    return pb.Descriptor(mode=ref.mode, file=file_message(ref))


def process_message(
    state: ProcessState, membership: Membership, creation_ns: int
) -> pb.Process:
    """The ids part of a ``schema.Process``."""
    process = pb.Process(
        creation_timestamp=creation_ns,
        uuid=state.uuid,
        pid=state.tgid,
        parent_pid=state.ppid,
        parent_uuid=state.parent_uuid,
        container_id=membership.container_id,
        exec_session_id=membership.exec_session_id,
    )
    if membership.container_id:
        process.container_pid = state.ns_pid
        process.container_parent_pid = state.ns_ppid
    return process


def args_message(
    argv: list[bytes],
    envp: list[bytes],
    config: CollectorConfig,
    missing: tuple[int, int] = (0, 0),
) -> pb.ProcessArguments:
    """argv and the allowed envp, each under its byte budget."""
    kept_argv, argv_cut = apply_budget(argv, config.argv_limit)
    allowed = filter_env(envp, config.envp_allowlist)
    kept_envp, envp_cut = apply_budget(allowed, config.envp_limit)
    return pb.ProcessArguments(
        argv=kept_argv,
        argv_truncated=(argv_cut + missing[0]) & U32_MASK,
        envp=kept_envp,
        envp_truncated=(envp_cut + missing[1]) & U32_MASK,
    )


def streams_message(
    fds: tuple[FileRef | None, FileRef | None, FileRef | None],
) -> pb.Streams:
    """fds 0-2 at exec."""
    return pb.Streams(
        stdin=descriptor_message(fds[0]),
        stdout=descriptor_message(fds[1]),
        stderr=descriptor_message(fds[2]),
    )


def execute_event(process: pb.Process, timestamp_ns: int) -> pb.Event:
    """Wrap a process as an ExecuteEvent."""
    return pb.Event(execute=pb.ExecuteEvent(proc=process), timestamp=timestamp_ns)


def enumerate_event(process: pb.Process, timestamp_ns: int) -> pb.Event:
    """Wrap a process as an EnumerateProcessEvent."""
    return pb.Event(
        enumproc=pb.EnumerateProcessEvent(proc=process), timestamp=timestamp_ns
    )


def clone_event(process: pb.Process, timestamp_ns: int) -> pb.Event:
    """Wrap a process as a CloneEvent."""
    return pb.Event(clone=pb.CloneEvent(proc=process), timestamp=timestamp_ns)


def exit_event(
    uuid: bytes, timestamp_ns: int, exit_status: int | None = None
) -> pb.Event:
    """An ExitEvent: the UUID, and the wait status when speaking v2."""
    exit = pb.ExitEvent(process_uuid=uuid)
    if exit_status is not None:
        exit.exit_status = exit_status & U32_MASK
    return pb.Event(exit=exit, timestamp=timestamp_ns)


def memexec_event(
    process: pb.Process,
    raw: RawMemexec,
    mapped: pb.File,
    is_initial: bool,
    timestamp_ns: int,
) -> pb.Event:
    """A MemoryExecEvent for one executable file mapping."""
    return pb.Event(
        memexec=pb.MemoryExecEvent(
            proc=process,
            prot_exec_timestamp=timestamp_ns,
            new_flags=raw.prot,
            req_flags=raw.reqprot,
            old_vm_flags=raw.old_vm_flags,
            mmap_flags=raw.mmap_flags,
            mapped_file=mapped,
            action=_ACTIONS[raw.action],
            start_addr=raw.start,
            end_addr=raw.end,
            is_initial_mmap=is_initial,
        ),
        timestamp=timestamp_ns,
    )


def container_event(
    container_id: int,
    creation_ns: int,
    init_uuid: bytes,
    metadata: ContainerMetadata | None,
    timestamp_ns: int,
) -> pb.Event:
    """A ContainerInfoEvent with whatever metadata is known."""
    container = pb.Container(
        creation_timestamp=creation_ns,
        container_id=container_id,
        init_uuid=init_uuid,
    )
    if metadata is not None:
        container.pod_namespace = metadata.pod_namespace.encode()
        container.pod_name = metadata.pod_name.encode()
        container.container_name = metadata.container_name.encode()
        container.container_image_uri = metadata.image.encode()
        container.labels.extend(label.encode() for label in metadata.labels)
    return pb.Event(
        container=pb.ContainerInfoEvent(container=container), timestamp=timestamp_ns
    )
