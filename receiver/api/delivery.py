"""Delivery endpoints: a VM's gaps, what was lost, where and why."""

import json
from typing import Any

from aiohttp import web
from sqlalchemy import Row

from receiver.api import serialize
from receiver.api.context import service_of, vm_row
from receiver.api.params import decode_cursor, encode_cursor, parse_limit
from receiver.api.problems import bad_parameter
from receiver.store.delivery import fetch_gaps, summarize_gaps
from receiver.timefmt import format_ns

routes = web.RouteTableDef()


def gap(row: Row[Any]) -> dict[str, Any]:
    """One gap as the API shows it; ``count`` is null when unknown (v1)."""
    return {
        "id": row.id,
        "boot": serialize.boot_hex(row.boot),
        "cause": row.cause,
        "first_seq": row.first_seq,
        "last_seq": row.last_seq,
        "count": row.count,
        "started_at": format_ns(row.started_at),
        "ended_at": format_ns(row.ended_at),
        "detected_at": format_ns(row.detected_at),
        "details": json.loads(row.details) if row.details else None,
    }


async def delivery_of(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    """A VM's delivery state: live counters and the stored gap summary."""
    service = service_of(request)
    state = service.registry.get(row.name)
    live = state is not None and state.vm_id == row.id
    body: dict[str, Any] = state.delivery.as_dict() if live and state else {}
    body["gap_summary"] = await summarize_gaps(service.engine, row.id)
    if live and state:
        body["sequences"] = {
            f"{boot:08x}": {"accepted": marks.accepted, "acked": marks.durable}
            for (vm_id, boot), marks in service.delivery.marks.items()
            if vm_id == row.id
        }
    return body


@routes.get("/api/v1/vms/{vm}/gaps")
async def list_gaps(request: web.Request) -> web.Response:
    """A VM's gaps, oldest first; filters ``boot`` (8 hex digits) and ``cause``."""
    row = await vm_row(request)
    limit = parse_limit(request.query)
    after = decode_cursor(request.query, "gaps", (int,))
    boot = request.query.get("boot")
    if boot is not None and not (0 < len(boot) <= 8 and _is_hex(boot)):
        raise bad_parameter("boot", "8 hex digits")
    boot_id = int(boot, 16) if boot else None
    rows = await fetch_gaps(
        service_of(request).engine,
        row.id,
        boot=boot_id,
        cause=request.query.get("cause"),
        after_id=after[0] if after else None,
        limit=limit,
    )
    next_cursor = encode_cursor("gaps", [rows[-1].id]) if len(rows) == limit else None
    return web.json_response({"items": [gap(r) for r in rows], "next": next_cursor})


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
