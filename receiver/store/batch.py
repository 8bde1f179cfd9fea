"""One ingest batch: rows merged per key, and the rule that merges a process
row into a stored one (the store's side of :meth:`ProcessPatch.merge`)."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func

from receiver.ingest.records import DETAIL_FIELDS, ProcessPatch
from receiver.store.models import containers, processes

# Column order of the tuples in ``Batch.events``.
EVENT_COLUMNS = ("vm_id", "boot", "kind", "at", "received_at", "uuid", "payload")
EventRow = tuple[int, int, str, int, int, bytes | None, bytes]


@dataclass(slots=True)
class Batch:
    """Rows gathered from many events, merged per key, ready to write."""

    processes: dict[tuple[int, int, bytes], ProcessPatch] = field(default_factory=dict)
    boots: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    containers: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)
    execs: dict[tuple[int, int, bytes, int], dict[str, Any]] = field(
        default_factory=dict
    )
    memexecs: list[dict[str, Any]] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)

    def add_process(self, patch: ProcessPatch) -> None:
        """Merge a process patch into the batch."""
        existing = self.processes.get(patch.key)
        if existing is None:
            self.processes[patch.key] = patch
        else:
            existing.merge(patch)

    def add_boot(self, vm_id: int, boot: int, seen_at: int) -> None:
        """Note that ``boot`` of ``vm_id`` was seen at ``seen_at``."""
        first, last = self.boots.get((vm_id, boot), (seen_at, seen_at))
        self.boots[(vm_id, boot)] = (min(first, seen_at), max(last, seen_at))

    def note_container(self, vm_id: int, boot: int, container_id: int) -> None:
        """Make sure a container seen only through its processes is listed."""
        key = (vm_id, boot, container_id)
        if key not in self.containers:
            row = dict.fromkeys(containers.c.keys())
            row.update(vm_id=vm_id, boot=boot, container_id=container_id)
            self.containers[key] = row

    def add_container(self, row: dict[str, Any]) -> None:
        """Merge container metadata; later reports fill or replace fields."""
        key = (row["vm_id"], row["boot"], row["container_id"])
        existing = self.containers.get(key)
        if existing is None:
            self.containers[key] = dict(row)
        else:
            existing.update({k: v for k, v in row.items() if v is not None})

    def sorted_patches(self) -> list[ProcessPatch]:
        """The processes in key order.

        A stable order keeps concurrent writers from deadlocking on row locks.
        """
        return sorted(self.processes.values(), key=lambda p: p.key)


def process_merge_updates(new: Any) -> dict[str, Any]:
    """The ON CONFLICT assignments that merge an incoming row (``new``, the
    excluded row) into a stored one: the newest exec decides the details,
    other rows only fill what is unknown, the first exit time stays."""
    old = processes.c
    newer_exec = (new.exec_at.is_not(None)) & (
        new.exec_at >= func.coalesce(old.exec_at, 0)
    )
    updates: dict[str, Any] = {
        name: case(
            (newer_exec, getattr(new, name)),
            else_=func.coalesce(getattr(old, name), getattr(new, name)),
        )
        for name in DETAIL_FIELDS
    }
    updates["exec_at"] = case((newer_exec, new.exec_at), else_=old.exec_at)
    updates["exited_at"] = func.coalesce(old.exited_at, new.exited_at)
    updates["exit_status"] = func.coalesce(old.exit_status, new.exit_status)
    return updates
