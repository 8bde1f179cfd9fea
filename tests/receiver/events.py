"""Build CSM v1 guest streams for tests."""

import struct

from csm_wire.codec import FrameType, encode_frame
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_event, encode_heartbeat

BASE_NS = 1_764_000_000_000_000_000


def make_uuid(machine_id: int, start_ns: int, tgid: int) -> bytes:
    """A CSM process UUID."""
    return struct.pack("<IQI", machine_id, start_ns, tgid)


def execute(
    uuid: bytes,
    parent: bytes | None,
    binary: str,
    argv: list[str],
    at: int,
    **proc: object,
) -> bytes:
    """An execute event frame."""
    process = pb.Process(
        creation_timestamp=at,
        uuid=uuid,
        pid=struct.unpack("<I", uuid[12:])[0],
        binary=pb.File(fullpath=binary.encode()),
        parent_uuid=parent or b"",
        args=pb.ProcessArguments(argv=[a.encode() for a in argv]),
        **proc,  # type: ignore[arg-type]
    )
    return encode_event(pb.Event(timestamp=at, execute=pb.ExecuteEvent(proc=process)))


def clone(uuid: bytes, parent: bytes, at: int) -> bytes:
    """A clone event frame (real kernels fill only the two UUIDs)."""
    process = pb.Process(uuid=uuid, parent_uuid=parent)
    return encode_event(pb.Event(timestamp=at, clone=pb.CloneEvent(proc=process)))


def exit_(uuid: bytes, at: int) -> bytes:
    """An exit event frame."""
    return encode_event(pb.Event(timestamp=at, exit=pb.ExitEvent(process_uuid=uuid)))


def heartbeat() -> bytes:
    """A heartbeat frame."""
    return encode_heartbeat()


def raw_frame(frame_type: int, payload: bytes) -> bytes:
    """Any frame, for malformed-input tests."""
    return encode_frame(frame_type, payload)


__all__ = ["FrameType", "clone", "execute", "exit_", "heartbeat", "make_uuid"]
