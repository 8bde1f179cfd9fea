"""The connection to the host: connect, heartbeat, send, answer configuration.

The guest is the client, as a CSM kernel is: it dials the host over
AF_VSOCK (CID 2 by default, what Firecracker and Cloud Hypervisor forward)
or a Unix socket, and redials with backoff whenever the connection ends.
:class:`HostDialer` dials and redials; :class:`HostLink` speaks plain v1
on each connection (the v2 stream is in ``stream_link``).
"""

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from csm_wire.codec import MAX_GUEST_CONFIG_FRAME_BYTES, FrameDecoder, FrameType
from csm_wire.errors import FramingError
from csm_wire.messages import encode_heartbeat
from guest_lsm.config import Settings
from guest_lsm.stats import Counters, DropCause
from guest_lsm.transport.outbox import Outbox

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 65536
FIRST_BACKOFF_S = 0.2


@dataclass(slots=True)
class SessionTally:
    """What one connection carried, for its summary log line."""

    frames: int = 0
    bytes: int = 0
    requests: int = 0
    errors: int = 0


class HostDialer:
    """Keeps a connection to the host; subclasses serve each connection."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        on_connect: Callable[[], object],
    ) -> None:
        self._settings = settings
        self._counters = counters
        self._on_connect = on_connect
        self._writer: asyncio.StreamWriter | None = None
        self._tally = SessionTally()

    @property
    def protocol(self) -> str:
        """The protocol spoken on the current connection, for stats."""
        return "v1" if self.connected else "none"

    @property
    def connected(self) -> bool:
        """Whether a connection to the host is up."""
        return self._writer is not None

    def describe(self) -> str:
        """Where the host is, for logs."""
        if self._settings.unix is not None:
            return f"unix:{self._settings.unix}"
        return f"vsock:{self._settings.cid}:{self._settings.port}"

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._settings.unix is not None:
            return await asyncio.open_unix_connection(str(self._settings.unix))
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (self._settings.cid, self._settings.port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, and reconnect with backoff until ``stop`` is set."""
        backoff = FIRST_BACKOFF_S
        while not stop.is_set():
            try:
                reader, writer = await self._open()
            except OSError as exc:
                logger.debug("cannot reach the host at %s: %s", self.describe(), exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self._settings.reconnect_max_s)
                continue
            backoff = FIRST_BACKOFF_S
            await self._serve(reader, writer, stop)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stop: asyncio.Event,
    ) -> None:
        started = time.monotonic()
        self._tally = SessionTally()
        self._counters.connects += 1
        self._writer = writer
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(loop)
            for loop in self._open_session(reader, writer, started)
        ]
        tasks.append(asyncio.create_task(stop.wait()))
        try:
            self._on_connect()
            self._session_ready()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self._log_end(task.exception())
        finally:
            self._writer = None
            self._close_session()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._log_summary(time.monotonic() - started)

    def _open_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        started: float,
    ) -> list[Coroutine[Any, Any, None]]:
        """Send the opening frames; return the loops that serve the session."""
        raise NotImplementedError

    def _session_ready(self) -> None:
        """Called once the agent has been told of the connection."""

    def _close_session(self) -> None:
        """Forget the connection's state before its tasks are cancelled."""

    def _log_end(self, exc: BaseException | None) -> None:
        self._tally.errors += 1
        logger.info("connection to %s ended: %s", self.describe(), exc)

    def _log_summary(self, duration_s: float) -> None:
        tally = self._tally
        logger.info(
            "host session %s: %d frames, %d bytes, %d config requests, "
            "%d errors, %.1f s",
            self.describe(),
            tally.frames,
            tally.bytes,
            tally.requests,
            tally.errors,
            duration_s,
        )

    def send_now(self, frame: bytes) -> bool:
        """Write a frame ahead of the queue (heartbeats, responses)."""
        if self._writer is None:
            return False
        self._writer.write(frame)
        self._count_sent(1, len(frame))
        return True

    def _count_sent(self, frames: int, size: int) -> None:
        self._counters.frames_sent += frames
        self._counters.bytes_sent += size
        self._tally.frames += frames
        self._tally.bytes += size


class HostLink(HostDialer):
    """Speaks v1: frames from the outbox, heartbeats, type-3 requests answered."""

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        counters: Counters,
        on_connect: Callable[[], object],
        on_request: Callable[[bytes], bytes],
    ) -> None:
        super().__init__(settings, counters, on_connect)
        self._outbox = outbox
        self._on_request = on_request

    def _open_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        started: float,
    ) -> list[Coroutine[Any, Any, None]]:
        logger.info("connected to the host at %s", self.describe())
        self.send_now(encode_heartbeat())
        self._outbox.accepting = True
        return [
            self._send_loop(writer),
            self._receive_loop(reader),
            self._heartbeat_loop(),
        ]

    def _close_session(self) -> None:
        self._outbox.accepting = False
        self._outbox.clear(DropCause.DISCONNECTED)

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._outbox.wait()
            frames = self._outbox.take_all()
            data = b"".join(frames)
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                self._counters.event_writing_failed += len(frames)
                raise
            self._count_sent(len(frames), len(data))

    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder(max_frame_bytes=MAX_GUEST_CONFIG_FRAME_BYTES)
        while True:
            data = await reader.read(READ_CHUNK_BYTES)
            if not data:
                raise ConnectionError("the host closed the connection")
            try:
                frames = decoder.feed(data)
            except FramingError as exc:
                raise ConnectionError(f"bad framing from the host: {exc}") from exc
            for frame in frames:
                if frame.type != FrameType.CONFIG_REQUEST:
                    logger.warning("ignoring a type-%d frame from the host", frame.type)
                    continue
                self._tally.requests += 1
                self.send_now(self._on_request(frame.payload))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            self.send_now(encode_heartbeat())
