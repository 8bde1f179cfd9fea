"""The frame stream served to user-mode readers inside the guest.

The original kernel offered the same stream through a pipe for a node
daemon. Here each reader connects to a Unix socket and gets every event
frame from then on; a reader that falls behind loses frames (counted),
and with no reader nothing is done at all.
"""

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from guest_lsm.stats import Counters, DropCause

logger = logging.getLogger(__name__)

# Unsent bytes a reader may hold before its frames are dropped.
READER_BACKLOG_BYTES = 4 << 20


class LocalStream:
    """A Unix listener fanning event frames out to local readers."""

    def __init__(self, path: Path, counters: Counters) -> None:
        self.path = path
        self._counters = counters
        self._readers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen at the path, mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._accept, path=str(self.path)
        )
        os.chmod(self.path, 0o600)
        logger.info("local frame stream at %s", self.path)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._readers.add(writer)
        try:
            await reader.read()
        finally:
            self._readers.discard(writer)
            writer.close()

    def broadcast(self, frame: bytes) -> None:
        """Give a frame to every reader that keeps up."""
        for writer in list(self._readers):
            if writer.is_closing():
                self._readers.discard(writer)
            elif writer.transport.get_write_buffer_size() > READER_BACKLOG_BYTES:
                self._counters.drop(DropCause.LOCAL_READER_SLOW)
            else:
                writer.write(frame)

    async def close(self) -> None:
        """Disconnect readers and remove the socket."""
        for writer in list(self._readers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
