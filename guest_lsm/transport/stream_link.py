"""The connection to the host in protocol v2, with the fallback to v1.

A :class:`~csm_wire.v2_guest.GuestStream` holds the events: it numbers them,
keeps them until the host acknowledges them and replays them on the next
connection. This link only moves its bytes: the hello first, then whatever
the stream has to send, the host's bytes back into it, and its ticks
(heartbeats, counters, and the switch to v1 when the host never answers).
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from csm_wire.errors import FramingError
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_heartbeat
from csm_wire.v2_guest import GuestStream, StreamState
from guest_lsm.config import Protocol, Settings
from guest_lsm.stats import Counters
from guest_lsm.transport.link import READ_CHUNK_BYTES, HostDialer

logger = logging.getLogger(__name__)

MAX_TICK_S = 0.25
SEND_CHUNK_BYTES = 1 << 20

AnswerRequest = Callable[[pb.ConfigurationRequest | None], pb.ConfigurationResponse]


class V1OnlyHost(ConnectionError):
    """The host answered in v1 while the agent must speak v2."""


class StreamLink(HostDialer):
    """Moves a :class:`GuestStream` over each connection to the host."""

    def __init__(
        self,
        settings: Settings,
        stream: GuestStream,
        counters: Counters,
        on_connect: Callable[[], object],
        on_request: AnswerRequest,
        extra_drops: Callable[[], Mapping[str, int]],
    ) -> None:
        super().__init__(settings, counters, on_connect)
        self._stream = stream
        self._on_request = on_request
        self._extra_drops = extra_drops
        self._ready = asyncio.Event()
        self._strict = settings.protocol is Protocol.V2
        self._tick_s = min(MAX_TICK_S, settings.heartbeat_s / 2)

    @property
    def protocol(self) -> str:
        """The protocol spoken on the current connection, for stats."""
        return self._stream.state.value if self.connected else "none"

    def wake(self) -> None:
        """The stream has something new to send."""
        self._ready.set()

    def _open_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        started: float,
    ) -> list[Coroutine[Any, Any, None]]:
        logger.info("connected to the host at %s, saying hello", self.describe())
        # The hello must be the first frame; the heartbeat after it shows a
        # v1 host (which skips the hello) that the guest is alive.
        self.send_now(self._stream.connect(started))
        self.send_now(encode_heartbeat())
        return [self._send_loop(writer), self._receive_loop(reader), self._tick_loop()]

    def _session_ready(self) -> None:
        self.wake()

    def _close_session(self) -> None:
        self._stream.disconnected()

    def _note_state(self, before: StreamState) -> None:
        after = self._stream.state
        if after is before:
            return
        if after is StreamState.V2:
            hello = self._stream.host_hello
            logger.info(
                "the host at %s speaks v2 (%s); it holds up to sequence %d",
                self.describe(),
                hello.software_version if hello else "?",
                self._stream.acked_seq,
            )
        elif after is StreamState.V1:
            if self._strict:
                raise V1OnlyHost("the host speaks only v1 and --protocol is v2")
            logger.info(
                "the host at %s did not answer the hello: speaking v1, "
                "without replay or loss reports",
                self.describe(),
            )
        self.wake()

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        stream = self._stream
        while True:
            sent_before = stream.counters.sent
            data = stream.data_to_send(SEND_CHUNK_BYTES)
            if not data:
                self._ready.clear()
                await self._ready.wait()
                continue
            writer.write(data)
            self._count_sent(stream.counters.sent - sent_before, len(data))
            # drain() is where a slow host holds the guest: the replay buffer
            # fills meanwhile, and overflows into a loss report.
            await writer.drain()

    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        stream = self._stream
        while True:
            data = await reader.read(READ_CHUNK_BYTES)
            if not data:
                raise ConnectionError("the host closed the connection")
            before = stream.state
            try:
                configs = stream.receive(data)
            except FramingError as exc:
                raise ConnectionError(f"bad framing from the host: {exc}") from exc
            self._note_state(before)
            for config in configs:
                self._tally.requests += 1
                response = self._on_request(config.request)
                self.send_now(stream.answer_config(config, response))
            # An acknowledgement may have made room for more.
            self.wake()

    async def _tick_loop(self) -> None:
        stream = self._stream
        while True:
            await asyncio.sleep(self._tick_s)
            before = stream.state
            data = stream.tick(
                time.monotonic(),
                queue_depth=stream.unsent_entries,
                extra_drops=self._extra_drops(),
            )
            self._note_state(before)
            if data:
                self.send_now(data)
