"""Routes for the dashboard's page and assets; they need no token.

The page itself holds no data: it asks for a token and then reads the REST
API like any other client, so serving it openly reveals nothing.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_PREFIX = "/assets"

# Nothing outside the receiver may be loaded, and guest strings that reach
# the page as text can never run as script.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def index(request: web.Request) -> web.FileResponse:
    """The single page; every view is a fragment route inside it."""
    return web.FileResponse(STATIC_DIR / "index.html")


@web.middleware
async def _asset_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if request.path == "/" or request.path.startswith(ASSET_PREFIX + "/"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def add_dashboard(app: web.Application) -> None:
    """Serve the dashboard at ``/`` and its assets under ``/assets/``."""
    app.middlewares.append(_asset_headers)
    app.router.add_get("/", index)
    app.router.add_static(ASSET_PREFIX, STATIC_DIR, append_version=False)
