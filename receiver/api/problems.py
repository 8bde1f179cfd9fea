"""RFC 9457 problem responses, the only error format of the API."""

from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE)


class ApiProblem(Exception):
    """Raised by handlers; the middleware turns it into a problem response."""

    def __init__(self, status: int, title: str, detail: str = "", **extra: Any):
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra

    def response(self) -> web.Response:
        """The problem as an HTTP response."""
        return problem(self.status, self.title, self.detail, **self.extra)


def bad_parameter(name: str, reason: str) -> ApiProblem:
    """A 400 naming the offending parameter."""
    return ApiProblem(400, "Bad parameter", f"{name}: {reason}", parameter=name)


def not_found(what: str) -> ApiProblem:
    """A 404 for an unknown VM, process or route."""
    return ApiProblem(404, "Not found", what)
