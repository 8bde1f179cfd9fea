"""Configuration pushes relayed through the receiver that holds the VM.

A guest's connection ends at one hypervisor host, so only that host's
receiver can write to it. Any receiver asks by inserting a row into
``config_requests`` (:func:`relay_config`); the owner (:class:`ConfigRelay`)
claims rows for its host, pushes each to the guest and writes the answer
back. On PostgreSQL a NOTIFY wakes the owner at once; polling covers SQLite
and any missed notification. The configuration travels as protobuf JSON.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from csm_wire.gen import schema_pb2 as pb
from receiver.fleet.errors import HostUnavailable, RelayTimeout
from receiver.fleet.presence import fetch_lease
from receiver.sessions.vm import VmState
from receiver.store.models import config_requests

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "csm_config_requests"
OWNER_POLL_S = 0.25
ANSWER_POLL_S = 0.05
# Time for the owner to notice and claim a request, on top of the guest's.
RELAY_GRACE_S = 2.0


class RequestStatus:
    """The life of a relayed request (stored as text)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    """What became of a relayed push: ``delivery`` uses the API's words
    (answered, timeout, not_connected, disconnected) and ``answer`` is the
    guest's answer when there was one."""

    request_id: int
    host: str
    delivery: str
    answer: dict[str, Any] | None


# Pushes ``config`` to a VM served here: (delivery, answer or None).
LocalPush = Callable[
    [VmState, pb.ConfigurationRequest], Awaitable[tuple[str, dict[str, Any] | None]]
]


def config_to_json(config: pb.ConfigurationRequest) -> str:
    """A configuration request as the protobuf JSON stored in a request."""
    return json.dumps(MessageToDict(config, preserving_proto_field_name=True))


def config_from_json(document: str) -> pb.ConfigurationRequest:
    """The inverse of :func:`config_to_json`."""
    return ParseDict(json.loads(document), pb.ConfigurationRequest())


async def relay_config(
    engine: AsyncEngine,
    *,
    vm_id: int,
    config: pb.ConfigurationRequest,
    requested_by: str,
    timeout_s: float,
) -> RelayOutcome:
    """Push ``config`` to VM ``vm_id`` through the receiver on its host.

    Raises HostUnavailable when no live receiver holds the VM, and
    RelayTimeout when the owner neither claims nor answers within
    ``timeout_s`` plus a grace period.
    """
    lease = await fetch_lease(engine, vm_id)
    if lease is None or not lease.live(time.time_ns()):
        raise HostUnavailable(f"no running receiver holds VM {vm_id}")
    request_id = await _insert_request(engine, vm_id, lease.host, config, requested_by)
    deadline = time.monotonic() + timeout_s + RELAY_GRACE_S
    while time.monotonic() < deadline:
        row = await _fetch_request(engine, request_id)
        if row.status == RequestStatus.DONE:
            answer = json.loads(row.answer) if row.answer else None
            return RelayOutcome(request_id, lease.host, row.delivery, answer)
        await asyncio.sleep(ANSWER_POLL_S)
    if await _abandon(engine, request_id):
        raise RelayTimeout(f"receiver on {lease.host} did not claim the request")
    raise RelayTimeout(f"receiver on {lease.host} did not answer in time")


async def _insert_request(
    engine: AsyncEngine,
    vm_id: int,
    host: str,
    config: pb.ConfigurationRequest,
    requested_by: str,
) -> int:
    async with engine.begin() as connection:
        result = await connection.execute(
            config_requests.insert().values(
                vm_id=vm_id,
                host=host,
                config=config_to_json(config),
                requested_at=time.time_ns(),
                requested_by=requested_by,
                status=RequestStatus.PENDING,
            )
        )
        if connection.dialect.name == "postgresql":
            # Delivered at commit, so the owner never sees a missing row.
            await connection.execute(
                text("SELECT pg_notify(:channel, :host)"),
                {"channel": NOTIFY_CHANNEL, "host": host},
            )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def _fetch_request(engine: AsyncEngine, request_id: int) -> Row[Any]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(config_requests).where(config_requests.c.id == request_id)
            )
        ).one()
    return row


async def _abandon(engine: AsyncEngine, request_id: int) -> bool:
    """Withdraw a request nobody claimed; False if it was claimed meanwhile."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(config_requests)
            .where(
                config_requests.c.id == request_id,
                config_requests.c.status == RequestStatus.PENDING,
            )
            .values(status=RequestStatus.ABANDONED)
        )
    return bool(result.rowcount)


async def push_to_latest_session(
    vm: VmState, config: pb.ConfigurationRequest, timeout_s: float
) -> tuple[str, dict[str, Any] | None]:
    """Send ``config`` on the VM's newest session and wait for the answer."""
    if not vm.sessions:
        return "not_connected", None
    session = max(vm.sessions, key=lambda s: s.opened_at)
    answer = session.push_config(config)
    try:
        return "answered", await asyncio.wait_for(asyncio.shield(answer), timeout_s)
    except TimeoutError:
        return "timeout", None
    except ConnectionError:
        return "disconnected", None


class ConfigRelay:
    """Claims the configuration requests for this host and answers them."""

    def __init__(
        self,
        engine: AsyncEngine,
        host: str,
        find_vm: Callable[[int], VmState | None],
        push: LocalPush,
    ) -> None:
        self.engine = engine
        self.host = host
        self.find_vm = find_vm
        self.push = push
        self.relayed = 0
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Answer requests until ``stop`` is set."""
        async with self._notifications():
            while not stop.is_set():
                try:
                    await self.answer_pending()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("relayed configuration requests failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), OWNER_POLL_S)
                self._wake.clear()

    def wake(self) -> None:
        """Look for requests now."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def _notifications(self) -> Any:
        if self.engine.dialect.name != "postgresql":
            yield
            return
        connection = await self.engine.raw_connection()
        driver: Any = connection.driver_connection

        def notified(*args: object) -> None:
            if args[-1] == self.host:
                self._wake.set()

        try:
            await driver.add_listener(NOTIFY_CHANNEL, notified)
            yield
        finally:
            with contextlib.suppress(Exception):
                await driver.remove_listener(NOTIFY_CHANNEL, notified)
            connection.close()

    async def answer_pending(self) -> int:
        """Claim and answer every pending request; return how many."""
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(config_requests.c.id, config_requests.c.vm_id)
                    .where(
                        config_requests.c.host == self.host,
                        config_requests.c.status == RequestStatus.PENDING,
                    )
                    .order_by(config_requests.c.id)
                )
            ).all()
        answered = 0
        for row in rows:
            if await self._claim(row.id):
                await self._answer(row.id, row.vm_id)
                answered += 1
        return answered

    async def _claim(self, request_id: int) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(config_requests)
                .where(
                    config_requests.c.id == request_id,
                    config_requests.c.status == RequestStatus.PENDING,
                )
                .values(status=RequestStatus.CLAIMED)
            )
        return bool(result.rowcount)

    async def _answer(self, request_id: int, vm_id: int) -> None:
        row = await _fetch_request(self.engine, request_id)
        vm = self.find_vm(vm_id)
        answer: dict[str, Any] | None = None
        try:
            config = config_from_json(row.config)
        except (ValueError, ParseError) as exc:
            log.warning("relayed request %d is not a configuration: %s", row.id, exc)
            delivery = "invalid"
        else:
            if vm is None:
                delivery = "not_connected"
            else:
                delivery, answer = await self.push(vm, config)
        log.info(
            "relayed configuration from %s to vm %s: %s",
            row.requested_by,
            vm.name if vm else vm_id,
            delivery,
        )
        async with self.engine.begin() as connection:
            await connection.execute(
                update(config_requests)
                .where(config_requests.c.id == request_id)
                .values(
                    status=RequestStatus.DONE,
                    delivery=delivery,
                    answer=json.dumps(answer) if answer is not None else None,
                    answered_at=time.time_ns(),
                )
            )
        self.relayed += 1
