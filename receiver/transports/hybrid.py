"""Hybrid vsock (Firecracker, Cloud Hypervisor): one Unix listener per VM.

The VMM forwards a guest's connection to port P to ``<uds_path>_P``. Accept
gives no peer address, so the listener a connection arrives on is the VM.
"""

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

from receiver.errors import VmError
from receiver.sessions.vm import VmState
from receiver.transports.listener import ConnectionHandler, Listener

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128


def hybrid_socket_path(uds_path: str, port: int) -> Path:
    """The path a VMM connects to for guest connections to ``port``."""
    return Path(f"{uds_path}_{port}")


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise VmError(f"{path} exists and is not a socket; not replacing it")
    path.unlink()


class HybridListener(Listener):
    """Listens at ``<uds_path>_<port>`` for one VM."""

    kind = "hybrid"

    def __init__(
        self, vm: VmState, uds_path: str, port: int, handle: ConnectionHandler
    ) -> None:
        self.vm = vm
        self.path = hybrid_socket_path(uds_path, port)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_socket(self.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(os.fspath(self.path))
                sock.listen(LISTEN_BACKLOG)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise VmError(f"vm {vm.name}: cannot listen on {self.path}: {exc}") from exc
        super().__init__(sock, handle)
        log.info("vm %s: listening on %s", vm.name, self.path)

    def __str__(self) -> str:
        return f"hybrid listener {self.path}"

    async def resolve(self, peer: object) -> VmState | None:
        """Every connection on this socket belongs to this listener's VM."""
        return self.vm

    async def close(self) -> None:
        """Stop accepting and remove the socket file."""
        await super().close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
