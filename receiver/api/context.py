"""What request handlers reach: the service, through one typed app key."""

from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Row, select

from receiver.api.problems import not_found
from receiver.settings import VM_NAME_PATTERN
from receiver.store.models import vms

if TYPE_CHECKING:
    from receiver.service import Service

SERVICE_KEY: web.AppKey["Service"] = web.AppKey("service")


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
