"""Process endpoints: lists with filters, one process, and the tree."""

from aiohttp import web

from receiver.api import serialize
from receiver.api.context import service_of, vm_row
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_bool,
    parse_boot,
    parse_limit,
    parse_time_param,
    parse_uint,
    parse_uuid,
)
from receiver.api.problems import bad_parameter, not_found
from receiver.store import queries

routes = web.RouteTableDef()

MAX_BINARY_FILTER_BYTES = 256
MAX_TREE_PROCESSES = 50_000
MAX_CHILDREN = 1000
MAX_MEMEXECS = 1000


def _filters(request: web.Request) -> queries.ProcessFilter:
    query = request.query
    binary = query.get("binary")
    if binary is not None and not 0 < len(binary) <= MAX_BINARY_FILTER_BYTES:
        raise bad_parameter("binary", f"1 to {MAX_BINARY_FILTER_BYTES} characters")
    return queries.ProcessFilter(
        boot=parse_boot(query),
        container_id=parse_uint(query, "container_id"),
        exec_session_id=parse_uint(query, "exec_session_id"),
        alive=parse_bool(query, "alive"),
        binary=binary.encode("utf-8", "surrogateescape") if binary else None,
        since=parse_time_param(query, "since"),
        until=parse_time_param(query, "until"),
    )


def process_filters(request: web.Request) -> queries.ProcessFilter:
    """The process list filters of ``request`` (shared with the fleet list)."""
    return _filters(request)


@routes.get("/api/v1/vms/{vm}/processes")
async def list_processes(request: web.Request) -> web.Response:
    """A VM's processes, oldest first, filtered."""
    row = await vm_row(request)
    limit = parse_limit(request.query)
    filters = _filters(request)
    after = decode_cursor(request.query, "processes", (int, int, str))
    key = None
    if after is not None:
        key = (after[0], after[1], parse_uuid(after[2], "cursor"))
    rows = await queries.fetch_processes(
        service_of(request).engine, row.id, filters, key, limit
    )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(
            "processes", [last.started_at, last.boot, last.uuid.hex()]
        )
    items = [serialize.process(p) for p in rows]
    return serialize.json_response({"items": items, "next": next_cursor})


@routes.get("/api/v1/vms/{vm}/processes/{uuid}")
async def get_process(request: web.Request) -> web.Response:
    """One process with its ancestors, children, execs and mappings."""
    row = await vm_row(request)
    uuid = parse_uuid(request.match_info["uuid"])
    engine = service_of(request).engine
    view = await queries.fetch_process_view(
        engine,
        row.id,
        uuid,
        children_limit=MAX_CHILDREN,
        memexecs_limit=MAX_MEMEXECS,
    )
    if view is None:
        raise not_found(f"no process {uuid.hex()} in VM {row.name!r}")
    body = serialize.process(view.process)
    body["ancestors"] = [serialize.process(a) for a in view.ancestors]
    body["children"] = [serialize.process(c) for c in view.children]
    body["execs"] = [serialize.exec_record(e) for e in view.execs]
    body["memexecs"] = [serialize.memexec(m) for m in view.memexecs]
    return serialize.json_response(body)


@routes.get("/api/v1/vms/{vm}/tree")
async def get_tree(request: web.Request) -> web.Response:
    """The process tree: every process with its parent, and the roots."""
    row = await vm_row(request)
    query = request.query
    at = parse_time_param(query, "at")
    rows = await queries.fetch_tree(
        service_of(request).engine,
        row.id,
        at=at,
        container_id=parse_uint(query, "container_id"),
        boot=parse_boot(query),
        limit=MAX_TREE_PROCESSES + 1,
    )
    truncated = len(rows) > MAX_TREE_PROCESSES
    rows = rows[:MAX_TREE_PROCESSES]
    items = [serialize.process(p) for p in rows]
    present = {(item["boot"], item["uuid"]) for item in items}
    roots = [
        item["uuid"]
        for item in items
        if item["parent_uuid"] is None
        or (item["boot"], item["parent_uuid"]) not in present
    ]
    return serialize.json_response(
        {"items": items, "roots": roots, "truncated": truncated, "next": None}
    )
