"""The detector's bounded memory of what earlier events said.

Detections need a little context an event does not carry: the binary of the
parent, the container's metadata, whether an exec session was already
reported. Recent answers are kept in LRU maps of fixed size; a miss falls
back to the store, so a restart or an evicted entry costs one query.
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.detect.facts import ContainerInfo, text
from receiver.detect.findings import BuiltinKind
from receiver.ingest.pipeline import QueuedEvent
from receiver.store import findings as store

K = TypeVar("K")
V = TypeVar("V")

# About 250 bytes an entry: a few MiB at most, and misses cost one query.
DEFAULT_MEMORY_ENTRIES = 10_000

ProcessKey = tuple[int, int, bytes]
ContainerKey = tuple[int, int, int]


class LruMap(Generic[K, V]):
    """A mapping that forgets its least recently used entries past capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def __getitem__(self, key: K) -> V:
        value = self._items[key]
        self._items.move_to_end(key)
        return value

    def get(self, key: K, default: V) -> V:
        """The value for ``key``, or ``default`` when forgotten."""
        return self[key] if key in self._items else default

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key``, forgetting the oldest if full."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def _container_info(row: dict[str, object]) -> ContainerInfo:
    def field(name: str) -> str | None:
        value = row.get(name)
        return text(value) if isinstance(value, bytes) else None

    return ContainerInfo(
        pod_namespace=field("pod_namespace"),
        pod_name=field("pod_name"),
        container_name=field("container_name"),
        image=field("image"),
    )


def _merge(old: ContainerInfo | None, new: ContainerInfo) -> ContainerInfo:
    if old is None:
        return new
    return ContainerInfo(
        pod_namespace=new.pod_namespace or old.pod_namespace,
        pod_name=new.pod_name or old.pod_name,
        container_name=new.container_name or old.container_name,
        image=new.image or old.image,
    )


class DetectorMemory:
    """Process binaries, containers and reported sessions and findings."""

    def __init__(
        self, engine: AsyncEngine, capacity: int = DEFAULT_MEMORY_ENTRIES
    ) -> None:
        self.engine = engine
        self.binaries: LruMap[ProcessKey, str | None] = LruMap(capacity)
        self.containers: LruMap[ContainerKey, ContainerInfo | None] = LruMap(capacity)
        self.sessions: LruMap[ContainerKey, bool] = LruMap(capacity)
        self.reported: LruMap[tuple[int, int, bytes, str], bool] = LruMap(capacity)
        self.store_lookups = 0

    def observe(self, item: QueuedEvent) -> None:
        """Learn binaries and container metadata from one stored event."""
        record = item.record
        vm_id = item.vm.vm_id
        patch = record.process
        if record.kind in ("execute", "enumproc") and patch is not None:
            self.binaries.put(patch.key, text(patch.binary))
        elif record.kind == "clone" and patch is not None:
            # A forked child runs its parent's program until it executes.
            parent = (vm_id, patch.boot, patch.parent_uuid or b"")
            if parent in self.binaries and patch.key not in self.binaries:
                self.binaries.put(patch.key, self.binaries[parent])
        row = record.container_row
        if row is not None:
            key = (vm_id, row["boot"], row["container_id"])
            old = self.containers.get(key, None)
            self.containers.put(key, _merge(old, _container_info(row)))

    async def binary(self, vm_id: int, boot: int, uuid: bytes | None) -> str | None:
        """The binary of a process, from memory or the store."""
        if uuid is None:
            return None
        key = (vm_id, boot, uuid)
        if key in self.binaries:
            return self.binaries[key]
        self.store_lookups += 1
        found = text(await store.fetch_process_binary(self.engine, *key))
        self.binaries.put(key, found)
        return found

    async def container(
        self, vm_id: int, boot: int, container_id: int
    ) -> ContainerInfo | None:
        """A container's metadata, from memory or the store."""
        if not container_id:
            return None
        key = (vm_id, boot, container_id)
        if key in self.containers:
            return self.containers[key]
        self.store_lookups += 1
        row = await store.fetch_container(self.engine, *key)
        info = _container_info(row._asdict()) if row is not None else None
        self.containers.put(key, info)
        return info

    async def sessions_reported(
        self, keys: Sequence[ContainerKey]
    ) -> set[ContainerKey]:
        """The exec sessions among ``keys`` whose start was already reported.

        What memory does not know is asked of the store in one query.
        """
        reported = {key for key in keys if self.sessions.get(key, False)}
        unknown = [key for key in keys if key not in self.sessions]
        if unknown:
            self.store_lookups += 1
            stored = await store.sessions_with_finding(
                self.engine, unknown, BuiltinKind.EXEC_SESSION_STARTED
            )
            for key in unknown:
                self.sessions.put(key, key in stored)
            reported |= stored
        return reported

    def mark_session(self, key: ContainerKey) -> None:
        """Remember that the exec session's start was reported."""
        self.sessions.put(key, True)
