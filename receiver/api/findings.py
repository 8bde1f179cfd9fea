"""Findings and detection rules: the list, the rules in force, a reload."""

import re

from aiohttp import web
from sqlalchemy import select

from receiver.api.context import service_of
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_limit,
    parse_time_param,
)
from receiver.api.problems import ApiProblem, bad_parameter, not_found
from receiver.detect.errors import RulesError
from receiver.detect.findings import Finding, Severity
from receiver.settings import VM_NAME_PATTERN
from receiver.store import findings as store
from receiver.store.models import vms
from receiver.timefmt import format_ns

routes = web.RouteTableDef()

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


async def _vm_id(request: web.Request, name: str) -> int:
    if not VM_NAME_PATTERN.match(name):
        raise not_found(f"no VM named {name!r}")
    async with service_of(request).engine.connect() as connection:
        vm_id = (
            await connection.execute(
                select(vms.c.id).where(vms.c.name == name, vms.c.deleted_at.is_(None))
            )
        ).scalar()
    if vm_id is None:
        raise not_found(f"no VM named {name!r}")
    return int(vm_id)


async def _filters(request: web.Request) -> store.FindingFilter:
    query = request.query
    kind = query.get("kind")
    if kind is not None and not KIND_PATTERN.match(kind):
        raise bad_parameter("kind", "1-64 lower-case letters, digits or '_'")
    name = query.get("vm")
    return store.FindingFilter(
        vm_id=await _vm_id(request, name) if name is not None else None,
        kind=kind,
        since=parse_time_param(query, "since"),
    )


@routes.get("/api/v1/findings")
async def list_findings(request: web.Request) -> web.Response:
    """Findings, oldest first, filtered by VM, kind and time."""
    limit = parse_limit(request.query)
    filters = await _filters(request)
    after = decode_cursor(request.query, "findings", (int, int))
    key = (after[0], after[1]) if after is not None else None
    rows = await store.fetch_findings(service_of(request).engine, filters, key, limit)
    items = [
        Finding(
            vm_id=row.vm_id,
            vm=row.vm_name,
            boot=row.boot,
            uuid=row.uuid,
            kind=row.kind,
            severity=Severity(row.severity),
            at=row.at,
            container_id=row.container_id,
            exec_session_id=row.exec_session_id,
            details=store.decode_details(row.details),
            id=row.id,
        ).as_json()
        for row in rows
    ]
    next_cursor = None
    if len(rows) == limit:
        next_cursor = encode_cursor("findings", [rows[-1].at, rows[-1].id])
    return web.json_response({"items": items, "next": next_cursor})


def _rules_body(request: web.Request) -> dict[str, object]:
    detector = service_of(request).detector
    rules = detector.rules
    return {
        "path": detector.rules_path,
        "loaded_at": format_ns(int(rules.loaded_at * 1e9)) if rules.path else None,
        "items": [rule.as_json() for rule in rules.rules],
        "next": None,
    }


@routes.get("/api/v1/rules")
async def list_rules(request: web.Request) -> web.Response:
    """The operator rules in force."""
    return web.json_response(_rules_body(request))


@routes.post("/api/v1/rules/reload")
async def reload_rules(request: web.Request) -> web.Response:
    """Reload the rules file; a refused file leaves the old rules in force."""
    # app.py imports this module to register its routes.
    from receiver.api.app import require_operator

    require_operator(request)
    detector = service_of(request).detector
    if detector.rules_path is None:
        raise ApiProblem(409, "No rules file", "start the receiver with --rules FILE")
    try:
        detector.reload_rules()
    except RulesError as exc:
        raise ApiProblem(422, "Rules refused", str(exc)) from None
    return web.json_response(_rules_body(request))
