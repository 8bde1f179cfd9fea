"""The fleet summary: what the dashboard's fleet page shows, for a page of
VMs of every host (or of ``?host=``) and totals over all of them, in one
request and a fixed number of queries."""

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Row

from receiver.api.context import service_of
from receiver.api.fleet import host_item
from receiver.api.params import decode_cursor, encode_cursor, parse_host, parse_limit
from receiver.api.serialize import json_response
from receiver.api.vms import connection_fields
from receiver.detect.findings import Severity
from receiver.fleet.presence import Lease
from receiver.sessions.vm import VmState
from receiver.store.summary import (
    FleetPage,
    FleetTotals,
    GapCount,
    fetch_fleet_page,
    fetch_fleet_totals,
)
from receiver.timefmt import format_ns

if TYPE_CHECKING:
    from receiver.service import Service

routes = web.RouteTableDef()

CURSOR_KIND = "fleet-summary"
SEVERITIES = tuple(str(severity) for severity in Severity)


def _lease(row: Row[Any]) -> Lease | None:
    if row.lease_host is None:
        return None
    return Lease(
        row.id,
        row.lease_host,
        bool(row.lease_connected),
        row.lease_health,
        row.lease_protocol,
        row.lease_last_heartbeat,
        row.lease_expires_at,
    )


def _counters(state: VmState) -> dict[str, int]:
    counters = state.counters
    return {
        "events": counters.events,
        "frames": counters.frames,
        "bytes": counters.bytes,
        "drops": sum(counters.drops.values()),
        "decode_errors": counters.decode_errors,
    }


def _hello(state: VmState) -> dict[str, Any] | None:
    hello = state.delivery.hello
    if hello is None:
        return None
    # The JSON form of a proto uint64 is a string of digits.
    capacity = hello.get("replay_capacity_events")
    return {
        "software_version": hello.get("software_version"),
        "replay_capacity_events": int(capacity) if capacity is not None else None,
    }


def _findings(by_severity: Mapping[str, int]) -> dict[str, Any]:
    counts = {severity: 0 for severity in SEVERITIES} | dict(by_severity)
    return {"total": sum(counts.values()), "by_severity": counts}


def _gaps(gaps: Iterable[GapCount]) -> list[dict[str, Any]]:
    # By hand: dataclasses.asdict costs a fifth of a 1,000-VM answer.
    return [
        {
            "cause": gap.cause,
            "gaps": gap.gaps,
            "events": gap.events,
            "unknown_size": gap.unknown_size,
        }
        for gap in gaps
    ]


def _item(service: "Service", row: Row[Any], page: FleetPage, now: int) -> Any:
    state = service.registry.get(row.name)
    if state is not None and state.vm_id != row.id:
        state = None
    return {
        "id": row.id,
        "name": row.name,
        "host": row.host,
        "transport": row.transport,
        "address": row.address,
        **connection_fields(state, _lease(row), now),
        "boots": int(row.boot_count),
        "last_event_at": format_ns(row.last_event_at),
        "counters": _counters(state) if state else None,
        "hello": _hello(state) if state else None,
        "gaps": _gaps(page.gaps.get(row.id, [])),
        "findings": _findings(page.findings.get(row.id, {})),
    }


def _totals(
    service: "Service", host: str | None, totals: FleetTotals, now: int
) -> dict[str, Any]:
    # This receiver's VMs count from their live state; other hosts' VMs
    # from the leases their receivers renew.
    local = list(service.registry) if host in (None, service.settings.host) else []
    running = sum(1 for row in totals.receivers if row.expires_at > now)
    return {
        "vms": totals.vms,
        "connected": totals.remote_connected + sum(1 for vm in local if vm.sessions),
        "events": sum(vm.counters.events for vm in local),
        "drops": sum(sum(vm.counters.drops.values()) for vm in local),
        "decode_errors": sum(vm.counters.decode_errors for vm in local),
        "gaps": sum(gap.gaps for gap in totals.gaps),
        "gap_events": sum(gap.events for gap in totals.gaps),
        "gaps_by_cause": _gaps(totals.gaps),
        "findings": _findings(totals.findings),
        "hosts": len(totals.receivers),
        "hosts_running": running,
    }


@routes.get("/api/v1/fleet/summary")
async def fleet_summary(request: web.Request) -> web.Response:
    """A page of VMs in (name, host) order with their connection, counters,
    last event, gaps and findings; totals and hosts over the whole scope."""
    query = request.query
    host = parse_host(query)
    limit = parse_limit(query)
    after = decode_cursor(query, CURSOR_KIND, (str, str))
    service = service_of(request)
    page = await fetch_fleet_page(
        service.engine,
        host=host,
        after=(after[0], after[1]) if after else None,
        limit=limit,
    )
    now = time.time_ns()
    totals = await fetch_fleet_totals(
        service.engine, host=host, local_host=service.settings.host, now_ns=now
    )
    rows = page.rows
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor(CURSOR_KIND, [rows[-1].name, rows[-1].host])
    return json_response(
        {
            "items": [_item(service, row, page, now) for row in rows],
            "next": next_cursor,
            "totals": _totals(service, host, totals, now),
            "hosts": [host_item(row, now) for row in totals.receivers],
        }
    )
