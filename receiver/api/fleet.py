"""Fleet endpoints: every host's receiver and processes, through any one."""

import time
from typing import Any

from aiohttp import web
from sqlalchemy import Row

from receiver.api import serialize
from receiver.api.context import service_of
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_host,
    parse_limit,
    parse_uuid,
)
from receiver.api.problems import bad_parameter
from receiver.api.processes import process_filters
from receiver.fleet.presence import fetch_receivers
from receiver.settings import VM_NAME_PATTERN
from receiver.store.fleet import fetch_fleet_processes
from receiver.store.queries import PROCESS_COLUMNS
from receiver.timefmt import format_ns

routes = web.RouteTableDef()


def host_item(row: Row[Any], now_ns: int) -> dict[str, Any]:
    """One receiver (hypervisor host) as the API shows it."""
    return {
        "host": row.host,
        "api": row.api,
        "running": row.expires_at > now_ns,
        "started_at": format_ns(row.started_at),
        "heartbeat_at": format_ns(row.heartbeat_at),
    }


@routes.get("/api/v1/hosts")
async def list_hosts(request: web.Request) -> web.Response:
    """The receivers sharing this database and whether they run."""
    now = time.time_ns()
    rows = await fetch_receivers(service_of(request).engine)
    items = [host_item(row, now) for row in rows]
    return web.json_response({"items": items, "next": None})


@routes.get("/api/v1/processes")
async def list_fleet_processes(request: web.Request) -> web.Response:
    """Processes of every VM on every host, oldest first; filters ``host``,
    ``vm`` and those of a VM's process list."""
    query = request.query
    limit = parse_limit(query)
    vm = query.get("vm")
    if vm is not None and not VM_NAME_PATTERN.match(vm):
        raise bad_parameter("vm", "a VM name")
    after = decode_cursor(query, "fleet-processes", (int, int, int, str))
    key = None
    if after is not None:
        key = (after[0], after[1], after[2], parse_uuid(after[3], "cursor"))
    rows = await fetch_fleet_processes(
        service_of(request).engine,
        host=parse_host(query),
        vm=vm,
        filters=process_filters(request),
        after=key,
        limit=limit,
    )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(
            "fleet-processes",
            [last.started_at, last.vm_id, last.boot, last.uuid.hex()],
        )
    width = len(PROCESS_COLUMNS)
    items = [
        {"host": p.vm_host, "vm": p.vm_name, **serialize.process(p[:width])}
        for p in rows
    ]
    return web.json_response({"items": items, "next": next_cursor})
