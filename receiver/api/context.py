"""What request handlers reach: the service, through one typed app key."""

from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Row, select

from receiver.api.auth import Principal, Role
from receiver.api.problems import ApiProblem, not_found
from receiver.settings import VM_NAME_PATTERN
from receiver.store.models import vms

if TYPE_CHECKING:
    from receiver.service import Service

SERVICE_KEY: web.AppKey["Service"] = web.AppKey("service")
PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def service_of(request: web.Request) -> "Service":
    """The running service behind the app."""
    return request.app[SERVICE_KEY]


async def vm_row(request: web.Request) -> Row[Any]:
    """The VM named in the path, or a 404."""
    name = request.match_info["vm"]
    # Names that no VM can have (NUL, quotes, slashes) never reach the store.
    if not VM_NAME_PATTERN.match(name):
        raise not_found(f"no VM named {name!r}")
    engine = service_of(request).engine
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(vms).where(vms.c.name == name, vms.c.deleted_at.is_(None))
            )
        ).first()
    if row is None:
        raise not_found(f"no VM named {name!r}")
    return row


def principal_of(request: web.Request) -> Principal:
    """Who made the request (set by the auth middleware)."""
    return request[PRINCIPAL_KEY]


def require_operator(request: web.Request) -> Principal:
    """The request's principal, or a 403 unless it is an operator."""
    principal = principal_of(request)
    if principal.role < Role.OPERATOR:
        raise ApiProblem(403, "Forbidden", "this needs an operator token")
    return principal
