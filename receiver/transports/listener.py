"""Accept loops for guest listeners; VM identity comes from the transport."""

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable

from receiver.sessions.vm import VmState

log = logging.getLogger(__name__)

# What to do with an accepted socket once its VM is known.
ConnectionHandler = Callable[[socket.socket, VmState], Awaitable[None]]

ACCEPT_BACKOFF_S = 0.1
# Too many open files is a host problem, not a guest's: wait, do not spin.
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    """A listening socket whose accepted connections map to VMs."""

    kind = "listener"

    def __init__(self, sock: socket.socket, handle: ConnectionHandler) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._handle = handle
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start accepting in the background."""
        self._task = asyncio.create_task(self._accept_loop(), name=str(self))

    async def resolve(self, peer: object) -> VmState | None:
        """Return the VM a connection from ``peer`` belongs to, or None."""
        raise NotImplementedError

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    log.error("%s: accept failed: %s", self, exc)
                    await asyncio.sleep(ACCEPT_BACKOFF_S)
                    continue
                log.error("%s: listener failed: %s", self, exc)
                return
            await self._admit(conn, peer)

    async def _admit(self, conn: socket.socket, peer: object) -> None:
        try:
            vm = await self.resolve(peer)
            if vm is None:
                log.warning("%s: refused connection from %r", self, peer)
                conn.close()
                return
            await self._handle(conn, vm)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception:
            log.exception("%s: could not start a session for %r", self, peer)
            conn.close()

    async def close(self) -> None:
        """Stop accepting and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sock.close()
