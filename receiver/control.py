"""The control plane: which configuration each VM should run, delivered to
its guests, and what they answered.

The stored configurations are cached here and refreshed from the store
whenever a guest connects, so a change made by another receiver sharing the
database reaches the guest on its next connection. Every request sent on a
session is remembered in order, because a v1 guest's answer does not say
which request it answers: answers come back in the order of the requests.
"""

import asyncio
import enum
import logging
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from csm_wire.gen import schema_pb2 as pb
from receiver.config import default_configuration
from receiver.configjson import request_from_json, request_to_json
from receiver.sessions.registry import VmRegistry
from receiver.sessions.session import GuestSession
from receiver.sessions.vm import VmState
from receiver.store import configs
from receiver.store.configs import FLEET_SCOPE, ChangeStatus, DesiredConfig
from receiver.store.vms import record_config_response

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class ConfigSource(enum.StrEnum):
    """Where a VM's configuration comes from."""

    VM = "vm"
    FLEET = "fleet"
    BUILTIN = "builtin"


class Delivery(enum.StrEnum):
    """What became of a push to a guest."""

    ANSWERED = "answered"
    # The guest connected but has not spoken yet: sent when it does.
    QUEUED = "queued"
    TIMEOUT = "timeout"
    NOT_CONNECTED = "not_connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Effective:
    """The configuration a VM should run and where it comes from."""

    source: ConfigSource
    scope: str
    generation: int
    request: pb.ConfigurationRequest
    desired: DesiredConfig | None

    def describe(self) -> dict[str, Any]:
        """What the guest is told, for the answer's record."""
        return {
            "source": str(self.source),
            "scope": self.scope,
            "generation": self.generation,
        }


def status_of(answer: dict[str, Any]) -> ChangeStatus:
    """A guest answer as a change status."""
    return (
        ChangeStatus.APPLIED if answer["error"] == "NO_ERROR" else ChangeStatus.REJECTED
    )


class ControlPlane:
    """Keeps desired configurations and pushes them to guests."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: VmRegistry,
        *,
        timeout_s: float,
        spawn: Spawn,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.timeout_s = timeout_s
        self._spawn = spawn
        self._desired: dict[str, DesiredConfig] = {}
        self._sent: weakref.WeakKeyDictionary[GuestSession, deque[Effective]] = (
            weakref.WeakKeyDictionary()
        )
        # The request a session will send once its guest first speaks; a
        # change that lands before then is written into it.
        self._initial: weakref.WeakKeyDictionary[
            GuestSession, pb.ConfigurationRequest
        ] = weakref.WeakKeyDictionary()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read every stored configuration."""
        for desired in await configs.fetch_all_desired(self.engine):
            self._desired[desired.scope] = desired

    async def refresh(self, vm_name: str) -> None:
        """Re-read the configurations that apply to ``vm_name``."""
        for scope in (vm_name, FLEET_SCOPE):
            desired = await configs.fetch_desired(self.engine, scope)
            if desired is None:
                self._desired.pop(scope, None)
            else:
                self._desired[scope] = desired

    async def refresh_session(self, session: GuestSession, vm: VmState) -> None:
        """Re-read ``vm``'s configuration; send it if it changed meanwhile.

        Another receiver sharing the database may have changed it.
        """
        before = self.effective(vm.name)
        try:
            await self.refresh(vm.name)
        except (DBAPIError, OSError) as exc:
            log.warning("vm %s: configuration not re-read: %s", vm.name, exc)
            return
        after = self.effective(vm.name)
        if _identity(after) != _identity(before) and not session.closed:
            await self.push([session], after)

    def effective(self, vm_name: str) -> Effective:
        """The VM's own configuration, else the fleet default, else built-in."""
        desired = self._desired.get(vm_name)
        if desired is not None:
            request = request_from_json(desired.config)
            return Effective(
                ConfigSource.VM, vm_name, desired.generation, request, desired
            )
        return self.fleet_effective()

    def fleet_effective(self) -> Effective:
        """The fleet default, else the built-in configuration."""
        desired = self._desired.get(FLEET_SCOPE)
        if desired is not None:
            request = request_from_json(desired.config)
            return Effective(
                ConfigSource.FLEET, FLEET_SCOPE, desired.generation, request, desired
            )
        builtin = default_configuration()
        return Effective(ConfigSource.BUILTIN, "", 0, builtin, None)

    def attach(self, session: GuestSession, vm: VmState) -> pb.ConfigurationRequest:
        """Remember a new session; return the request to open it with."""
        effective = self.effective(vm.name)
        request = pb.ConfigurationRequest()
        request.CopyFrom(effective.request)
        self._sent[session] = deque([effective])
        self._initial[session] = request
        return request

    def on_answer(
        self, session: GuestSession, vm: VmState, answer: dict[str, Any]
    ) -> None:
        """Record a guest's answer against the request it answers."""
        sent = self._sent.get(session)
        effective = sent.popleft() if sent else None
        record = dict(answer)
        if effective is not None:
            record.update(effective.describe())
            record["config"] = request_to_json(effective.request)
        self._spawn(record_config_response(self.engine, vm.vm_id, record))
        if effective is not None and effective.source is ConfigSource.VM:
            self._spawn(
                configs.record_answer(
                    self.engine,
                    effective.scope,
                    effective.generation,
                    status_of(answer),
                    answer,
                )
            )

    async def change(
        self, scope: str, document: dict[str, Any], changed_by: str
    ) -> tuple[DesiredConfig, int]:
        """Store a checked configuration for ``scope``."""
        request = request_from_json(document)
        async with self._lock:
            desired, change_id = await configs.store_desired(
                self.engine, scope, request_to_json(request), changed_by
            )
            self._desired[scope] = desired
        return desired, change_id

    def _send(self, session: GuestSession, effective: Effective) -> Any:
        initial = self._initial.get(session)
        sent = self._sent.setdefault(session, deque())
        if session.frames == 0 and initial is not None:
            # Not greeted yet: the session sends ``initial`` when the guest
            # first speaks, so that request becomes this one.
            initial.CopyFrom(effective.request)
            sent.clear()
            sent.append(effective)
            return None
        sent.append(effective)
        return session.push_config(effective.request)

    async def push(
        self, sessions: Iterable[GuestSession], effective: Effective
    ) -> list[dict[str, Any]]:
        """Send ``effective`` on each session and wait for the answers."""
        sessions = [s for s in sessions if not s.closed]
        futures = [self._send(session, effective) for session in sessions]
        waiting = [f for f in futures if f is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=self.timeout_s)
        results: list[dict[str, Any]] = []
        for future in futures:
            results.append(_outcome(future))
        return results

    def sessions_using_fleet(self) -> list[tuple[VmState, GuestSession]]:
        """Live sessions of VMs that run the fleet default."""
        found: list[tuple[VmState, GuestSession]] = []
        for vm in self.registry:
            if vm.name in self._desired:
                continue
            found.extend((vm, session) for session in vm.sessions)
        return found


def _identity(effective: Effective) -> tuple[str, str, int]:
    return (effective.source, effective.scope, effective.generation)


def _outcome(future: "asyncio.Future[dict[str, Any]] | None") -> dict[str, Any]:
    if future is None:
        return {"delivery": Delivery.QUEUED, "answer": None}
    if not future.done():
        future.cancel()
        return {"delivery": Delivery.TIMEOUT, "answer": None}
    if future.cancelled() or future.exception() is not None:
        return {"delivery": Delivery.DISCONNECTED, "answer": None}
    return {"delivery": Delivery.ANSWERED, "answer": future.result()}
