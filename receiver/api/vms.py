"""VM endpoints: the fleet, one VM, its containers and exec sessions."""

import json
import time
from typing import Any

from aiohttp import web
from sqlalchemy import Row

from receiver.api import serialize
from receiver.api.context import service_of, vm_row
from receiver.api.params import decode_cursor, encode_cursor, parse_limit
from receiver.fleet.presence import Lease, fetch_lease, fetch_leases
from receiver.store import queries
from receiver.timefmt import format_ns

routes = web.RouteTableDef()


def _vm_summary(
    request: web.Request,
    row: Row[Any],
    boots: list[Row[Any]],
    lease: Lease | None = None,
) -> dict[str, Any]:
    state = service_of(request).registry.get(row.name)
    live = state is not None and state.vm_id == row.id
    if not live and lease is not None:
        # A VM of another host: as its receiver last reported it.
        return _remote_summary(row, boots, lease)
    return {
        "name": row.name,
        "host": row.host,
        "transport": row.transport,
        "address": row.address,
        "connected": bool(live and state and state.sessions),
        "health": state.health.value if live and state else "disconnected",
        "protocol": state.protocol if live and state else None,
        "last_heartbeat": format_ns(int(state.last_heartbeat * 1e9))
        if live and state and state.last_heartbeat
        else None,
        "boots": _boots(boots),
    }


def _remote_summary(
    row: Row[Any], boots: list[Row[Any]], lease: Lease
) -> dict[str, Any]:
    held = lease.live(time.time_ns())
    return {
        "name": row.name,
        "host": row.host,
        "transport": row.transport,
        "address": row.address,
        "connected": held and lease.connected,
        "health": lease.health if held else "disconnected",
        "protocol": lease.protocol if held else None,
        "last_heartbeat": format_ns(lease.last_heartbeat),
        "boots": _boots(boots),
    }


def _boots(boots: list[Row[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "boot": serialize.boot_hex(boot.boot),
            "first_seen": format_ns(boot.first_seen),
            "last_seen": format_ns(boot.last_seen),
        }
        for boot in boots
    ]


@routes.get("/api/v1/vms")
async def list_vms(request: web.Request) -> web.Response:
    """Every VM of the fleet (or of ``?host=``) with its connection and boots."""
    engine = service_of(request).engine
    rows = await queries.fetch_vms(engine, request.query.get("host"))
    boots: dict[int, list[Row[Any]]] = {}
    for boot in await queries.fetch_boots(engine):
        boots.setdefault(boot.vm_id, []).append(boot)
    leases = await fetch_leases(engine)
    items = [
        _vm_summary(request, row, boots.get(row.id, []), leases.get(row.id))
        for row in rows
    ]
    return web.json_response({"items": items, "next": None})


@routes.get("/api/v1/vms/{vm}")
async def get_vm(request: web.Request) -> web.Response:
    """One VM with its counters."""
    row = await vm_row(request)
    engine = service_of(request).engine
    lease = await fetch_lease(engine, row.id)
    boots = list(await queries.fetch_boots(engine, row.id))
    body = _vm_summary(request, row, boots, lease)
    state = service_of(request).registry.get(row.name)
    live = state is not None and state.vm_id == row.id
    body["counters"] = state.counters.as_dict() if live and state else None
    body["config_response"] = (
        json.loads(row.config_response) if row.config_response else None
    )
    return web.json_response(body)


@routes.get("/api/v1/vms/{vm}/containers")
async def list_containers(request: web.Request) -> web.Response:
    """A VM's containers, with pod metadata where the guest reported it."""
    row = await vm_row(request)
    limit = parse_limit(request.query)
    after = decode_cursor(request.query, "containers", (int, int))
    rows = await queries.fetch_containers(
        service_of(request).engine,
        row.id,
        (after[0], after[1]) if after else None,
        limit,
    )
    items = [serialize.container(c) for c in rows]
    next_cursor = (
        encode_cursor("containers", [rows[-1].boot, rows[-1].container_id])
        if len(rows) == limit
        else None
    )
    return web.json_response({"items": items, "next": next_cursor})


@routes.get("/api/v1/vms/{vm}/exec-sessions")
async def list_exec_sessions(request: web.Request) -> web.Response:
    """Exec sessions (kubectl exec and the like) with their processes."""
    row = await vm_row(request)
    limit = parse_limit(request.query)
    after = decode_cursor(request.query, "exec-sessions", (int, int))
    sessions = await queries.fetch_exec_sessions(
        service_of(request).engine,
        row.id,
        (after[0], after[1]) if after else None,
        limit,
    )
    items = [
        {
            "boot": serialize.boot_hex(s["boot"]),
            "exec_session_id": serialize.unsigned(s["exec_session_id"]),
            "container_id": serialize.unsigned(s["container_id"]),
            "started_at": format_ns(s["started_at"]),
            "processes": [uuid.hex() for uuid in s["uuids"]],
        }
        for s in sessions
    ]
    next_cursor = (
        encode_cursor(
            "exec-sessions", [sessions[-1]["boot"], sessions[-1]["exec_session_id"]]
        )
        if len(sessions) == limit
        else None
    )
    return web.json_response({"items": items, "next": next_cursor})
