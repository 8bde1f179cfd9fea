"""The local control socket: stats, configuration and container reports.

One JSON object per line each way. Requests: ``{"cmd": "stats"}``,
``{"cmd": "config-get"}``, ``{"cmd": "config-set", "config": {...}}`` (a
whole replacement) and ``{"cmd": "container", "report": {...}}``. The socket
is created mode 0600: only root in the guest may steer the collector.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guest_lsm.errors import ControlError, GuestError

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 16
CLIENT_TIMEOUT_S = 10.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves control requests with a handler that returns a JSON-ready answer."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Create the socket (replacing a stale one) and listen."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
        )
        os.chmod(self.path, 0o600)
        logger.info("control socket at %s", self.path)

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError) as exc:
            logger.debug("control client went away: %s", exc)
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            return {"ok": True, **self._handler(request)}
        except (ValueError, GuestError) as exc:
            return {"ok": False, "error": str(exc)}


def request(path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request to a running agent and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CLIENT_TIMEOUT_S)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(MAX_REQUEST_BYTES)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"cannot talk to the agent at {path}: {exc}") from exc
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"the agent answered garbage: {data[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise ControlError("the agent answered something other than an object")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "request failed")))
    return answer
