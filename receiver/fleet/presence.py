"""Presence: each receiver renews a lease on its host and on every VM it
serves, so any receiver can tell who holds a VM's connection.

Nothing but the database is shared: a receiver that stops renewing (crashed,
partitioned away) simply lets its leases expire.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.fleet.upsert import upsert
from receiver.sessions.vm import VmState
from receiver.store.models import receivers, vm_leases

log = logging.getLogger(__name__)

# A lease outlives this many missed renewals before it counts as expired.
LEASE_RENEWALS = 3


@dataclass(frozen=True, slots=True)
class Lease:
    """A VM's connection as its receiver last reported it."""

    vm_id: int
    host: str
    connected: bool
    health: str
    protocol: str | None
    last_heartbeat: int | None
    expires_at: int

    def live(self, now_ns: int) -> bool:
        """True while the holding receiver keeps renewing it."""
        return self.expires_at > now_ns


def _lease(row: Row[Any]) -> Lease:
    return Lease(
        row.vm_id,
        row.host,
        row.connected,
        row.health,
        row.protocol,
        row.last_heartbeat,
        row.expires_at,
    )


async def fetch_leases(engine: AsyncEngine) -> dict[int, Lease]:
    """Every VM lease, by VM id (expired ones included)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(vm_leases))).all()
    return {row.vm_id: _lease(row) for row in rows}


async def fetch_lease(engine: AsyncEngine, vm_id: int) -> Lease | None:
    """The lease of one VM, if any receiver ever held it."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(vm_leases).where(vm_leases.c.vm_id == vm_id)
            )
        ).first()
    return _lease(row) if row is not None else None


async def fetch_receivers(engine: AsyncEngine) -> list[Row[Any]]:
    """Every receiver that ever ran on the database, by host."""
    async with engine.connect() as connection:
        query = select(receivers).order_by(receivers.c.host)
        return list((await connection.execute(query)).all())


class Presence:
    """Renews this receiver's host lease and its VMs' leases."""

    def __init__(
        self,
        engine: AsyncEngine,
        host: str,
        instance: str,
        vms: Callable[[], Iterable[VmState]],
        *,
        interval_s: float,
        api: Callable[[], str],
    ) -> None:
        self.engine = engine
        self.host = host
        self.instance = instance
        self.vms = vms
        self.interval_s = interval_s
        self.api = api
        self.started_at = time.time_ns()

    @property
    def ttl_ns(self) -> int:
        """How long a renewal holds."""
        return int(self.interval_s * LEASE_RENEWALS * 1e9)

    async def check_alone(self) -> None:
        """Warn if another live receiver already claims this host name."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(receivers).where(receivers.c.host == self.host)
                )
            ).first()
        if (
            row is not None
            and row.instance != self.instance
            and row.expires_at > time.time_ns()
        ):
            log.warning(
                "another receiver (instance %s) holds host %s; every host "
                "needs its own --host name",
                row.instance,
                self.host,
            )

    async def renew(self) -> None:
        """Renew the host lease and one lease per served VM."""
        now = time.time_ns()
        expires = now + self.ttl_ns
        host_row = {
            "host": self.host,
            "instance": self.instance,
            "api": self.api(),
            "started_at": self.started_at,
            "heartbeat_at": now,
            "expires_at": expires,
        }
        vm_rows = [
            {
                "vm_id": vm.vm_id,
                "host": self.host,
                "connected": bool(vm.sessions),
                "health": vm.health.value,
                "protocol": vm.protocol,
                "last_heartbeat": int(vm.last_heartbeat * 1e9)
                if vm.last_heartbeat
                else None,
                "renewed_at": now,
                "expires_at": expires,
            }
            for vm in sorted(self.vms(), key=lambda vm: vm.vm_id)
        ]
        async with self.engine.begin() as connection:
            await upsert(connection, receivers, [host_row], ["host"])
            await upsert(connection, vm_leases, vm_rows, ["vm_id"])

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every ``interval_s`` until ``stop`` is set; outages are
        retried. Never cancelled mid-query, so no connection is lost."""
        while not stop.is_set():
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not renew the leases of host %s: %s", self.host, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def release(self) -> None:
        """Give the leases up at once (a clean stop), marking VMs disconnected."""
        now = time.time_ns()
        async with self.engine.begin() as connection:
            await connection.execute(
                update(receivers)
                .where(
                    receivers.c.host == self.host,
                    receivers.c.instance == self.instance,
                )
                .values(expires_at=now)
            )
            await connection.execute(
                update(vm_leases)
                .where(vm_leases.c.host == self.host)
                .values(connected=False, health="disconnected", expires_at=now)
            )
