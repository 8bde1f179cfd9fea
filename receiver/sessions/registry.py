"""The VMs this receiver serves, by name and by guest CID."""

import asyncio
import logging
from collections.abc import Iterator

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.sessions.limits import IdentityTracker
from receiver.sessions.vm import VmState
from receiver.settings import GuestLimits, VmSpec
from receiver.store.vms import upsert_vm

log = logging.getLogger(__name__)


class VmRegistry:
    """Knows every VM's state; creates VMs for unknown CIDs on first contact."""

    def __init__(
        self, engine: AsyncEngine, host: str, limits: GuestLimits | None = None
    ) -> None:
        self.engine = engine
        self.host = host
        self.limits = limits or GuestLimits()
        self.by_name: dict[str, VmState] = {}
        self.by_cid: dict[int, VmState] = {}
        self._lock = asyncio.Lock()

    def __iter__(self) -> Iterator[VmState]:
        return iter(list(self.by_name.values()))

    def get(self, name: str) -> VmState | None:
        """The VM called ``name``, if this receiver knows it."""
        return self.by_name.get(name)

    async def register(self, spec: VmSpec, *, registered: bool = True) -> VmState:
        """Add ``spec`` (or refresh it) and return its state."""
        async with self._lock:
            vm_id = await upsert_vm(self.engine, spec, self.host, registered=registered)
            state = self.by_name.get(spec.name)
            if state is None or state.spec != spec:
                state = VmState(vm_id, spec, identities=IdentityTracker(self.limits))
                self.by_name[spec.name] = state
            if spec.cid is not None:
                self.by_cid[spec.cid] = state
            return state

    def remove(self, name: str) -> VmState | None:
        """Forget the VM called ``name``; return its state if it was known."""
        state = self.by_name.pop(name, None)
        cid = state.spec.cid if state is not None else None
        if cid is not None and self.by_cid.get(cid) is state:
            del self.by_cid[cid]
        return state

    async def resolve_cid(self, cid: int) -> VmState:
        """The VM for a native-vsock CID; ``cid-<N>`` when not configured."""
        state = self.by_cid.get(cid)
        if state is not None:
            return state
        log.info("accepting unknown CID %d as vm cid-%d", cid, cid)
        return await self.register(
            VmSpec(f"cid-{cid}", "cid", cid=cid), registered=False
        )
