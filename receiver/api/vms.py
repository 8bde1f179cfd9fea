"""VM endpoints: the fleet, one VM, its containers and exec sessions."""

import json
import time
from typing import Any

from aiohttp import web
from sqlalchemy import Row

from receiver.api import delivery, serialize
from receiver.api.context import require_operator, service_of, vm_row
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_host,
    parse_limit,
    read_json_body,
)
from receiver.api.problems import ApiProblem, bad_parameter
from receiver.errors import VmError
from receiver.fleet.presence import Lease, fetch_lease, fetch_leases
from receiver.sessions.vm import VmState
from receiver.settings import VM_NAME_PATTERN, VmSpec
from receiver.store import queries
from receiver.timefmt import format_ns

# Room for "_<port>" in a Unix socket path of at most 107 bytes.
MAX_UDS_PATH_BYTES = 96
MIN_GUEST_CID = 3
MAX_GUEST_CID = 2**32 - 2

routes = web.RouteTableDef()


def connection_fields(
    state: VmState | None, lease: Lease | None, now_ns: int
) -> dict[str, Any]:
    """A VM's connected, health, protocol and last heartbeat: this receiver's
    live ``state`` of it, else the ``lease`` of the receiver holding it."""
    if state is not None:
        return {
            "connected": bool(state.sessions),
            "health": state.health.value,
            "protocol": state.protocol,
            "last_heartbeat": format_ns(int(state.last_heartbeat * 1e9))
            if state.last_heartbeat
            else None,
        }
    if lease is not None:
        # A VM of another host: as its receiver last reported it.
        held = lease.live(now_ns)
        return {
            "connected": held and lease.connected,
            "health": lease.health if held else "disconnected",
            "protocol": lease.protocol if held else None,
            "last_heartbeat": format_ns(lease.last_heartbeat),
        }
    return {
        "connected": False,
        "health": "disconnected",
        "protocol": None,
        "last_heartbeat": None,
    }


def live_state(request: web.Request, vm_id: int, name: str) -> VmState | None:
    """This receiver's state of the VM, if it serves that very VM."""
    state = service_of(request).registry.get(name)
    return state if state is not None and state.vm_id == vm_id else None


def _vm_summary(
    request: web.Request,
    row: Row[Any],
    boots: list[Row[Any]],
    lease: Lease | None = None,
) -> dict[str, Any]:
    return {
        "name": row.name,
        "host": row.host,
        "transport": row.transport,
        "address": row.address,
        **connection_fields(
            live_state(request, row.id, row.name), lease, time.time_ns()
        ),
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
    rows = await queries.fetch_vms(engine, parse_host(request.query))
    boots: dict[int, list[Row[Any]]] = {}
    for boot in await queries.fetch_boots(engine):
        boots.setdefault(boot.vm_id, []).append(boot)
    leases = await fetch_leases(engine)
    items = [
        _vm_summary(request, row, boots.get(row.id, []), leases.get(row.id))
        for row in rows
    ]
    return web.json_response({"items": items, "next": None})


def _spec_from_body(body: Any) -> VmSpec:
    if not isinstance(body, dict):
        raise bad_parameter("body", "an object with name and uds_path or cid")
    unknown = sorted(set(body) - {"name", "uds_path", "cid"})
    if unknown:
        raise bad_parameter(unknown[0], "unknown field")
    name = body.get("name")
    if not isinstance(name, str) or not VM_NAME_PATTERN.fullmatch(name):
        raise bad_parameter(
            "name", "1-63 letters, digits, '.', '_' or '-', starting alphanumeric"
        )
    uds_path, cid = body.get("uds_path"), body.get("cid")
    if (uds_path is None) == (cid is None):
        raise bad_parameter("uds_path", "give exactly one of uds_path and cid")
    if uds_path is not None:
        if (
            not isinstance(uds_path, str)
            or not uds_path.startswith("/")
            or not 1 < len(uds_path.encode()) <= MAX_UDS_PATH_BYTES
            or "\0" in uds_path
        ):
            raise bad_parameter(
                "uds_path", f"an absolute path of at most {MAX_UDS_PATH_BYTES} bytes"
            )
        return VmSpec(name, "hybrid", uds_path=uds_path)
    if (
        not isinstance(cid, int)
        or isinstance(cid, bool)
        or not MIN_GUEST_CID <= cid <= MAX_GUEST_CID
    ):
        raise bad_parameter(
            "cid", f"a guest CID from {MIN_GUEST_CID} to {MAX_GUEST_CID}"
        )
    return VmSpec(name, "cid", cid=cid)


@routes.post("/api/v1/vms")
async def register_vm(request: web.Request) -> web.Response:
    """Register a VM at run time; a hybrid VM's listener opens at once."""
    require_operator(request)
    spec = _spec_from_body(await read_json_body(request))
    service = service_of(request)
    existing = {row.name for row in await queries.fetch_vms(service.engine)}
    if spec.name in existing:
        raise ApiProblem(409, "Conflict", f"a VM named {spec.name!r} exists")
    try:
        await service.add_vm(spec, registered=True)
    except VmError as exc:
        await service.remove_vm(spec.name)
        raise ApiProblem(422, "Cannot listen", str(exc), parameter="uds_path") from None
    rows = [
        row for row in await queries.fetch_vms(service.engine) if row.name == spec.name
    ]
    body = _vm_summary(request, rows[0], [])
    return web.json_response(
        body, status=201, headers={"Location": f"/api/v1/vms/{spec.name}"}
    )


@routes.delete("/api/v1/vms/{vm}")
async def delete_vm(request: web.Request) -> web.Response:
    """Close a VM's listener and connections; its history stays stored."""
    require_operator(request)
    row = await vm_row(request)
    await service_of(request).remove_vm(row.name)
    return web.Response(status=204)


@routes.get("/api/v1/vms/{vm}")
async def get_vm(request: web.Request) -> web.Response:
    """One VM with its counters."""
    row = await vm_row(request)
    engine = service_of(request).engine
    lease = await fetch_lease(engine, row.id)
    boots = list(await queries.fetch_boots(engine, row.id))
    body = _vm_summary(request, row, boots, lease)
    state = live_state(request, row.id, row.name)
    body["counters"] = state.counters.as_dict() if state else None
    body["delivery"] = await delivery.delivery_of(request, row)
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
