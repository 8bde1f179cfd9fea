"""The fleet summary's queries: a page of VMs with their stored counts, and
totals over every VM in scope, in a fixed number of statements.

Nothing here loops over VMs: per-VM figures come from one grouped query over
the page's VM ids, and totals from grouped queries over the whole scope.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from sqlalchemy import Row, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.store.models import (
    boots,
    delivery_gaps,
    findings,
    receivers,
    vm_leases,
    vms,
)


@dataclass(frozen=True, slots=True)
class GapCount:
    """Stored gaps of one cause: how many, events known lost, of unknown size."""

    cause: str
    gaps: int
    events: int
    unknown_size: int


@dataclass(frozen=True, slots=True)
class FleetPage:
    """One page of VMs, each row with its lease, boot count and last event."""

    rows: Sequence[Row[Any]]
    gaps: dict[int, list[GapCount]] = field(default_factory=dict)
    findings: dict[int, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """Counts over every VM in scope, not only one page."""

    vms: int
    # VMs whose lease is held, connected, by a receiver of another host.
    remote_connected: int
    gaps: list[GapCount]
    findings: dict[str, int]
    receivers: Sequence[Row[Any]]


Columns = TypeVarTuple("Columns")


def _in_scope(query: Select[*Columns], host: str | None) -> Select[*Columns]:
    """``query`` limited to VMs not deleted (of ``host``)."""
    query = query.where(vms.c.deleted_at.is_(None))
    if host is not None:
        query = query.where(vms.c.host == host)
    return query


def _page_query(
    host: str | None, after: tuple[str, str] | None, limit: int
) -> Select[Any]:
    b, lease = boots.c, vm_leases.c
    # Boots are few per VM and keyed (vm_id, boot): each lookup is an index
    # range, and last_seen is when the receiver last stored the boot's events.
    boot_count = select(func.count()).where(b.vm_id == vms.c.id).scalar_subquery()
    last_event = select(func.max(b.last_seen)).where(b.vm_id == vms.c.id)
    query: Select[Any] = select(
        vms.c.id,
        vms.c.name,
        vms.c.host,
        vms.c.transport,
        vms.c.address,
        lease.host.label("lease_host"),
        lease.connected.label("lease_connected"),
        lease.health.label("lease_health"),
        lease.protocol.label("lease_protocol"),
        lease.last_heartbeat.label("lease_last_heartbeat"),
        lease.expires_at.label("lease_expires_at"),
        boot_count.label("boot_count"),
        last_event.scalar_subquery().label("last_event_at"),
    ).select_from(vms.outerjoin(vm_leases, lease.vm_id == vms.c.id))
    query = _in_scope(query, host)
    if after is not None:
        query = query.where(tuple_(vms.c.name, vms.c.host) > after)
    return query.order_by(vms.c.name, vms.c.host).limit(limit)


def _gap_columns() -> list[Any]:
    g = delivery_gaps.c
    return [
        g.cause,
        func.count().label("gaps"),
        func.coalesce(func.sum(g.count), 0).label("events"),
        func.count().filter(g.count.is_(None)).label("unknown_size"),
    ]


def _gap_count(row: Row[Any]) -> GapCount:
    return GapCount(row.cause, int(row.gaps), int(row.events), int(row.unknown_size))


def _on_page(
    query: Select[*Columns], host: str | None, first: Row[Any], last: Row[Any]
) -> Select[*Columns]:
    """``query`` (joined with vms) limited to the page from ``first`` to
    ``last``: the same scope and key range, so no list of ids is sent."""
    key = tuple_(vms.c.name, vms.c.host)
    query = query.where(key >= (first.name, first.host), key <= (last.name, last.host))
    return _in_scope(query, host)


async def _page_gaps(
    connection: AsyncConnection, host: str | None, first: Row[Any], last: Row[Any]
) -> dict[int, list[GapCount]]:
    g = delivery_gaps.c
    query = select(g.vm_id, *_gap_columns()).join(vms, vms.c.id == g.vm_id)
    query = _on_page(query, host, first, last).group_by(g.vm_id, g.cause)
    by_vm: dict[int, list[GapCount]] = {}
    for row in await connection.execute(query.order_by(g.vm_id, g.cause)):
        by_vm.setdefault(row.vm_id, []).append(_gap_count(row))
    return by_vm


async def _page_findings(
    connection: AsyncConnection, host: str | None, first: Row[Any], last: Row[Any]
) -> dict[int, dict[str, int]]:
    f = findings.c
    query = select(f.vm_id, f.severity, func.count().label("n"))
    query = _on_page(query.join(vms, vms.c.id == f.vm_id), host, first, last)
    by_vm: dict[int, dict[str, int]] = {}
    for row in await connection.execute(query.group_by(f.vm_id, f.severity)):
        by_vm.setdefault(row.vm_id, {})[row.severity] = int(row.n)
    return by_vm


async def fetch_fleet_page(
    engine: AsyncEngine,
    *,
    host: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> FleetPage:
    """VMs (of ``host``) after ``after`` in (name, host) order, with their
    leases, boot counts, last event times, gaps by cause and findings by
    severity: three statements whatever the page size."""
    async with engine.connect() as connection:
        rows = (await connection.execute(_page_query(host, after, limit))).all()
        if not rows:
            return FleetPage(rows)
        first, last = rows[0], rows[-1]
        gaps = await _page_gaps(connection, host, first, last)
        by_severity = await _page_findings(connection, host, first, last)
    return FleetPage(rows, gaps, by_severity)


async def fetch_fleet_totals(
    engine: AsyncEngine, *, host: str | None, local_host: str, now_ns: int
) -> FleetTotals:
    """Totals over every VM (of ``host``) and the receivers (of ``host``):
    four statements whatever the fleet's size."""
    lease = vm_leases.c
    held_elsewhere = (
        (lease.host != local_host)
        & (lease.expires_at > now_ns)
        & lease.connected.is_(True)
    )
    counts_query = select(
        func.count().label("vms"),
        func.count().filter(held_elsewhere).label("remote_connected"),
    ).select_from(vms.outerjoin(vm_leases, lease.vm_id == vms.c.id))
    counts = _in_scope(counts_query, host)
    g, f = delivery_gaps.c, findings.c
    gaps = _in_scope(
        select(*_gap_columns()).join(vms, vms.c.id == g.vm_id), host
    ).group_by(g.cause)
    severities = _in_scope(
        select(f.severity, func.count().label("n")).join(vms, vms.c.id == f.vm_id),
        host,
    ).group_by(f.severity)
    receivers_query = _receivers_query(host)
    async with engine.connect() as connection:
        count_row = (await connection.execute(counts)).one()
        gap_rows = (await connection.execute(gaps.order_by(g.cause))).all()
        severity_rows = (await connection.execute(severities)).all()
        receiver_rows = (await connection.execute(receivers_query)).all()
    return FleetTotals(
        vms=int(count_row.vms),
        remote_connected=int(count_row.remote_connected),
        gaps=[_gap_count(row) for row in gap_rows],
        findings={row.severity: int(row.n) for row in severity_rows},
        receivers=receiver_rows,
    )


def _receivers_query(host: str | None) -> Select[Any]:
    query = select(receivers).order_by(receivers.c.host)
    if host is not None:
        query = query.where(receivers.c.host == host)
    return query
