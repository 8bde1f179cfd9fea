"""What detections see of a stored event: an exec or a mapping, as text."""

import json
from dataclasses import dataclass, field
from typing import Any

from receiver.ingest.pipeline import QueuedEvent
from receiver.store.codec import split_strings


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A container's metadata, as far as the guest reported it."""

    pod_namespace: str | None = None
    pod_name: str | None = None
    container_name: str | None = None
    image: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The metadata as finding details show it."""
        return {
            "pod_namespace": self.pod_namespace,
            "pod_name": self.pod_name,
            "container_name": self.container_name,
            "image": self.image,
        }


@dataclass(slots=True)
class ProcessFacts:
    """An executed or enumerated process, with what it runs and its streams."""

    vm_id: int
    vm: str
    event: str
    boot: int
    uuid: bytes
    at: int
    started_at: int
    binary: str | None
    argv: list[str] | None
    layer: str | None
    written_by: bytes | None
    parent_uuid: bytes | None
    container_id: int
    exec_session_id: int
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Filled on demand from the detector's memory or the store.
    parent_binary: str | None = None
    container: ContainerInfo | None = None


@dataclass(frozen=True, slots=True)
class MappingFacts:
    """An executable file mapping made by a process."""

    vm_id: int
    vm: str
    boot: int
    uuid: bytes
    at: int
    path: str | None
    layer: str | None
    written_by: bytes | None
    is_initial_mmap: bool
    container_id: int
    exec_session_id: int


def text(value: bytes | None) -> str | None:
    """Guest bytes as text; invalid UTF-8 becomes ``\\xNN`` escapes."""
    return value.decode("utf-8", "backslashreplace") if value is not None else None


def process_facts(item: QueuedEvent) -> ProcessFacts | None:
    """The facts of an execute or enumproc event; None for other events."""
    record = item.record
    patch = record.process
    if record.kind not in ("execute", "enumproc") or patch is None:
        return None
    argv = None
    if patch.argv is not None:
        argv = [t for t in map(text, split_strings(patch.argv)) if t is not None]
    return ProcessFacts(
        vm_id=item.vm.vm_id,
        vm=item.vm.name,
        event=record.kind,
        boot=patch.boot,
        uuid=patch.uuid,
        at=patch.exec_at if patch.exec_at is not None else record.at,
        started_at=patch.started_at,
        binary=text(patch.binary),
        argv=argv,
        layer=patch.binary_layer,
        written_by=patch.binary_written_by,
        parent_uuid=patch.parent_uuid,
        container_id=patch.container_id or 0,
        exec_session_id=patch.exec_session_id or 0,
        streams=json.loads(patch.streams) if patch.streams else {},
    )


def mapping_facts(item: QueuedEvent) -> MappingFacts | None:
    """The facts of a memexec event; None for other events."""
    record = item.record
    row = record.memexec_row
    patch = record.process
    if row is None or patch is None:
        return None
    return MappingFacts(
        vm_id=item.vm.vm_id,
        vm=item.vm.name,
        boot=row["boot"],
        uuid=row["uuid"],
        at=row["at"],
        path=text(row["path"]),
        layer=row["layer"],
        written_by=row["written_by"],
        is_initial_mmap=bool(row["is_initial_mmap"]),
        container_id=patch.container_id or 0,
        exec_session_id=patch.exec_session_id or 0,
    )
