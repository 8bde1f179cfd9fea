"""The aiohttp application: middlewares, routes and the app factory."""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from receiver.api import (
    configs,
    delivery,
    events,
    findings,
    fleet,
    metrics,
    openapi,
    processes,
    stream,
    summary,
    vms,
)
from receiver.api.context import (
    PRINCIPAL_KEY,
    SERVICE_KEY,
    principal_of,
    require_operator,
    service_of,
)
from receiver.api.problems import ApiProblem, problem
from receiver.dashboard import add_dashboard

if TYPE_CHECKING:
    from receiver.service import Service

# principal_of and require_operator are re-exported for handler modules.
__all__ = ["create_app", "principal_of", "require_operator"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("receiver.access")

PUBLIC_PATHS = frozenset({"/healthz"})
MAX_BODY_BYTES = 1 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _needs_token(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


@web.middleware
async def problems_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Render every error as problem+json and log one line per request."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiProblem as exc:
        status = exc.status
        return exc.response()
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        response = problem(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return problem(500, "Internal error", "the receiver logged the cause")
    finally:
        access_log.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path_qs,
            status,
            (time.perf_counter() - started) * 1000,
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid bearer token on the API and metrics."""
    if request.path in PUBLIC_PATHS or not _needs_token(request.path):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiProblem(401, "Unauthorized", "send Authorization: Bearer <token>")
    principal = service_of(request).tokens.authenticate(token.strip())
    if principal is None:
        raise ApiProblem(401, "Unauthorized", "unknown token")
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def whoami(request: web.Request) -> web.Response:
    """The caller's token label and role, so clients can offer what it may do."""
    principal = principal_of(request)
    return web.json_response(
        {"label": principal.label, "role": principal.role.name.lower()}
    )


def create_app(service: "Service") -> web.Application:
    """Build the application for ``service``."""
    app = web.Application(
        middlewares=[problems_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SERVICE_KEY] = service
    app.router.add_get("/healthz", healthz)
    app.add_routes(vms.routes)
    app.add_routes(processes.routes)
    app.add_routes(metrics.routes)
    app.add_routes(configs.routes)
    app.add_routes(events.routes)
    app.add_routes(stream.routes)
    app.add_routes(openapi.routes)
    app[stream.STREAMS_KEY] = set()
    app.on_shutdown.append(stream.close_streams)
    app.add_routes(fleet.routes)
    app.add_routes(summary.routes)
    app.add_routes(findings.routes)
    app.add_routes(delivery.routes)
    app.router.add_get("/api/v1/whoami", whoami)
    add_dashboard(app)
    return app
