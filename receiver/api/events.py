"""Raw events: what each guest sent, as stored, oldest first."""

from typing import Any

from aiohttp import web
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from csm_wire.gen import schema_pb2 as pb
from receiver.api.context import service_of
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_boot,
    parse_limit,
    parse_time_param,
)
from receiver.api.problems import bad_parameter, not_found
from receiver.api.serialize import boot_hex, text, uuid_hex
from receiver.settings import VM_NAME_PATTERN
from receiver.store.codec import u64_from_db
from receiver.store.models import events, vms
from receiver.timefmt import format_ns

routes = web.RouteTableDef()

EVENT_TYPES = ("execute", "clone", "exit", "memexec", "container", "enumproc")


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        # UUIDs read best as hex; paths, argv and names as text.
        return value.hex() if field.name.endswith("uuid") else text(value)
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        names = field.enum_type.values_by_number
        return names[value].name if value in names else value
    return value


def message_json(message: Message) -> dict[str, Any]:
    """A protobuf message as JSON-ready data; fields left at default omitted."""
    shown: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.is_repeated:
            shown[field.name] = [_field_value(field, item) for item in value]
        else:
            shown[field.name] = _field_value(field, value)
    return shown


def _payload(raw: bytes) -> dict[str, Any] | None:
    event = pb.Event()
    try:
        event.ParseFromString(raw)
    except DecodeError:
        return None
    return message_json(event)


def _event_json(row: Row[Any], vm_name: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "vm": vm_name,
        "boot": boot_hex(row.boot),
        "type": row.kind,
        "at": format_ns(u64_from_db(row.at)),
        "received_at": format_ns(row.received_at),
        "process_uuid": uuid_hex(row.uuid),
        "event": _payload(row.payload),
    }


async def _vm_ids(engine: AsyncEngine, name: str | None) -> dict[int, str]:
    query = select(vms.c.id, vms.c.name).where(vms.c.deleted_at.is_(None))
    if name is not None:
        query = query.where(vms.c.name == name)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {row.id: row.name for row in rows}


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """Stored events, filtered by ``vm``, ``boot``, ``type`` and time."""
    query = request.query
    limit = parse_limit(query)
    name = query.get("vm")
    if name is not None and not VM_NAME_PATTERN.fullmatch(name):
        raise bad_parameter("vm", "a VM name")
    kind = query.get("type")
    if kind is not None and kind not in EVENT_TYPES:
        raise bad_parameter("type", f"one of {', '.join(EVENT_TYPES)}")
    boot = parse_boot(query)
    since = parse_time_param(query, "since")
    until = parse_time_param(query, "until")
    after = decode_cursor(query, "events", (int,))

    engine = service_of(request).engine
    names = await _vm_ids(engine, name)
    if name is not None and not names:
        raise not_found(f"no VM named {name!r}")
    c = events.c
    select_events = select(events).where(c.vm_id.in_(list(names)))
    if boot is not None:
        select_events = select_events.where(c.boot == boot)
    if kind is not None:
        select_events = select_events.where(c.kind == kind)
    if since is not None:
        select_events = select_events.where(c.at >= since)
    if until is not None:
        select_events = select_events.where(c.at < until)
    if after is not None:
        # Ids only grow, so a cursor stays exact while new events arrive.
        select_events = select_events.where(c.id > after[0])
    select_events = select_events.order_by(c.id).limit(limit)
    async with engine.connect() as connection:
        rows = (await connection.execute(select_events)).all()

    items = [_event_json(row, names[row.vm_id]) for row in rows]
    next_cursor = encode_cursor("events", [rows[-1].id]) if len(rows) == limit else None
    return web.json_response({"items": items, "next": next_cursor})
