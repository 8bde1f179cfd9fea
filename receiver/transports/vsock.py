"""Native vsock (QEMU, crosvm, vhost-vsock): one AF_VSOCK listener for all.

The peer CID that accept returns is the VM's identity.
"""

import logging
import socket
from collections.abc import Awaitable, Callable

from receiver.errors import VmError
from receiver.sessions.vm import VmState
from receiver.transports.listener import ConnectionHandler, Listener

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128
# CIDs 0-2 are the hypervisor, local and host; a guest never has them.
FIRST_GUEST_CID = 3

CidResolver = Callable[[int], Awaitable[VmState | None]]


class VsockListener(Listener):
    """Listens on AF_VSOCK, any CID, one port."""

    kind = "vsock"

    def __init__(
        self, port: int, resolve_cid: CidResolver, handle: ConnectionHandler
    ) -> None:
        self.port = port
        self._resolve_cid = resolve_cid
        try:
            sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            try:
                sock.bind((socket.VMADDR_CID_ANY, port))
                sock.listen(LISTEN_BACKLOG)
            except OSError:
                sock.close()
                raise
        except (OSError, AttributeError) as exc:
            raise VmError(f"cannot listen on AF_VSOCK port {port}: {exc}") from exc
        super().__init__(sock, handle)
        log.info("listening on AF_VSOCK port %d", port)

    def __str__(self) -> str:
        return f"vsock listener port {self.port}"

    async def resolve(self, peer: object) -> VmState | None:
        """Map the peer CID to its VM; refuse addresses no guest can have."""
        if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], int):
            return None
        cid = peer[0]
        if cid < FIRST_GUEST_CID:
            return None
        return await self._resolve_cid(cid)
