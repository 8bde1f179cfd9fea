"""Configuration endpoints: a VM's and the fleet default, and their history."""

import json
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from receiver.api.context import require_operator, service_of, vm_row
from receiver.api.params import (
    decode_cursor,
    encode_cursor,
    parse_limit,
    read_json_body,
)
from receiver.api.problems import ApiProblem, bad_parameter
from receiver.configjson import ConfigInvalid, request_to_json
from receiver.control import ControlPlane, Delivery, Effective, status_of
from receiver.store import configs
from receiver.store.configs import FLEET_SCOPE, ChangeStatus
from receiver.timefmt import format_ns

routes = web.RouteTableDef()


def _control(request: web.Request) -> ControlPlane:
    return service_of(request).control


def _effective_json(effective: Effective) -> dict[str, Any]:
    desired = effective.desired
    return {
        "source": str(effective.source),
        "scope": effective.scope or None,
        "generation": effective.generation,
        "config": desired.config if desired else request_to_json(effective.request),
        "updated_at": format_ns(desired.updated_at) if desired else None,
        "updated_by": desired.updated_by if desired else None,
    }


def _change_json(row: Any) -> dict[str, Any]:
    change = configs.change_as_json(row)
    change["changed_at"] = format_ns(change["changed_at"])
    change["answered_at"] = format_ns(change["answered_at"])
    return change


async def _store(
    request: web.Request, scope: str
) -> tuple[configs.DesiredConfig, int, str]:
    principal = require_operator(request)
    document = await read_json_body(request)
    try:
        desired, change_id = await _control(request).change(
            scope, document, principal.label
        )
    except ConfigInvalid as exc:
        raise bad_parameter(exc.field, exc.reason) from None
    except IntegrityError as exc:
        # Two receivers changing one scope at once: one of them loses.
        raise ApiProblem(409, "Conflict", "a concurrent change; retry") from exc
    return desired, change_id, principal.label


@routes.get("/api/v1/vms/{vm}/config")
async def get_vm_config(request: web.Request) -> web.Response:
    """The configuration the VM should run and what it last answered."""
    row = await vm_row(request)
    control = _control(request)
    await control.refresh(row.name)
    body = {"vm": row.name, **_effective_json(control.effective(row.name))}
    body["last_answer"] = (
        json.loads(row.config_response) if row.config_response else None
    )
    latest = await configs.fetch_changes(service_of(request).engine, row.name, None, 1)
    body["pending"] = bool(latest) and latest[0].status == ChangeStatus.PENDING
    return web.json_response(body)


@routes.put("/api/v1/vms/{vm}/config")
async def put_vm_config(request: web.Request) -> web.Response:
    """Store a VM's configuration and push it to the guest if connected."""
    row = await vm_row(request)
    desired, change_id, _ = await _store(request, row.name)
    service = service_of(request)
    control = service.control
    state = service.registry.get(row.name)
    sessions = list(state.sessions) if state and state.vm_id == row.id else []
    effective = control.effective(row.name)
    outcomes = await control.push(sessions, effective) if sessions else []
    answers = [o["answer"] for o in outcomes if o["answer"] is not None]
    status = ChangeStatus.PENDING
    if answers and len(answers) == len(outcomes):
        statuses = {status_of(answer) for answer in answers}
        status = (
            ChangeStatus.REJECTED
            if ChangeStatus.REJECTED in statuses
            else ChangeStatus.APPLIED
        )
        await configs.record_answer(
            service.engine, row.name, desired.generation, status, answers[0]
        )
    delivery = Delivery.NOT_CONNECTED
    if outcomes:
        unanswered = [o["delivery"] for o in outcomes if o["answer"] is None]
        delivery = unanswered[0] if unanswered else Delivery.ANSWERED
    body = {
        "vm": row.name,
        "scope": row.name,
        "generation": desired.generation,
        "change_id": change_id,
        "config": desired.config,
        "status": str(status),
        "delivery": str(delivery),
        "answer": answers[0] if answers else None,
        "sessions": [
            {"delivery": str(o["delivery"]), "answer": o["answer"]} for o in outcomes
        ],
        "detail": _detail(delivery, service.settings.config_timeout_s),
    }
    answered = status is not ChangeStatus.PENDING
    return web.json_response(body, status=200 if answered else 202)


def _detail(delivery: Delivery, timeout_s: float) -> str:
    if delivery is Delivery.ANSWERED:
        return "the guest answered"
    if delivery is Delivery.TIMEOUT:
        return (
            f"the guest did not answer within {timeout_s:g}s; the change is "
            "pending and its answer will be recorded when it comes"
        )
    if delivery is Delivery.QUEUED:
        return "the guest has not spoken yet; sent when it does"
    if delivery is Delivery.DISCONNECTED:
        return "the guest disconnected; sent again on its next connection"
    return "the VM is not connected; sent on its next connection"


@routes.get("/api/v1/vms/{vm}/config/history")
async def vm_config_history(request: web.Request) -> web.Response:
    """The VM's configuration changes, newest first."""
    row = await vm_row(request)
    return await _history(request, row.name)


async def _history(request: web.Request, scope: str) -> web.Response:
    limit = parse_limit(request.query)
    after = decode_cursor(request.query, "config-history", (int,))
    rows = await configs.fetch_changes(
        service_of(request).engine, scope, after[0] if after else None, limit
    )
    next_cursor = (
        encode_cursor("config-history", [rows[-1].id]) if len(rows) == limit else None
    )
    items = [_change_json(r) for r in rows]
    return web.json_response({"items": items, "next": next_cursor})


@routes.get("/api/v1/config")
async def get_fleet_config(request: web.Request) -> web.Response:
    """The fleet default, used by VMs without a configuration of their own."""
    control = _control(request)
    await control.refresh(FLEET_SCOPE)
    return web.json_response(_effective_json(control.fleet_effective()))


@routes.put("/api/v1/config")
async def put_fleet_config(request: web.Request) -> web.Response:
    """Store the fleet default and push it to the VMs that use it."""
    desired, change_id, _ = await _store(request, FLEET_SCOPE)
    service = service_of(request)
    control = service.control
    targets = control.sessions_using_fleet()
    answers: dict[str, Any] = {}
    if targets:
        effective = control.fleet_effective()
        outcomes = await control.push([s for _, s in targets], effective)
        for (vm, _), outcome in zip(targets, outcomes, strict=True):
            answers[vm.name] = {
                "delivery": str(outcome["delivery"]),
                "answer": outcome["answer"],
            }
        await configs.record_fleet_answers(service.engine, change_id, answers)
    body = {
        "scope": FLEET_SCOPE,
        "generation": desired.generation,
        "change_id": change_id,
        "config": desired.config,
        "status": str(ChangeStatus.STORED),
        "vms": answers,
    }
    return web.json_response(body)


@routes.get("/api/v1/config/history")
async def fleet_config_history(request: web.Request) -> web.Response:
    """Changes of the fleet default, newest first."""
    return await _history(request, FLEET_SCOPE)
