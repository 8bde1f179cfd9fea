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
    return web.json_response({"items": items, "next": next_cursor})


@routes.get("/api/v1/vms/{vm}/processes/{uuid}")
async def get_process(request: web.Request) -> web.Response:
    """One process with its ancestors, children, execs and mappings."""
    row = await vm_row(request)
    uuid = parse_uuid(request.match_info["uuid"])
    engine = service_of(request).engine
    process = await queries.find_process(engine, row.id, uuid)
    if process is None:
        raise not_found(f"no process {uuid.hex()} in VM {row.name!r}")
    ancestors = await queries.fetch_ancestors(
        engine, row.id, process.boot, process.parent_uuid
    )
    children = await queries.fetch_children(
        engine, row.id, process.boot, uuid, MAX_CHILDREN
    )
    execs = await queries.fetch_execs(engine, row.id, process.boot, uuid)
    memexecs = await queries.fetch_memexecs(
        engine, row.id, process.boot, uuid, MAX_MEMEXECS
    )
    body = serialize.process(process)
    body["ancestors"] = [serialize.process(a) for a in ancestors]
    body["children"] = [serialize.process(c) for c in children]
    body["execs"] = [serialize.exec_record(e) for e in execs]
    body["memexecs"] = [serialize.memexec(m) for m in memexecs]
    return web.json_response(body)


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
    present = {(p.boot, p.uuid) for p in rows}
    items = [serialize.process(p) for p in rows]
    roots = [
        p.uuid.hex()
        for p in rows
        if p.parent_uuid is None or (p.boot, p.parent_uuid) not in present
    ]
    return web.json_response(
        {"items": items, "roots": roots, "truncated": truncated, "next": None}
    )
