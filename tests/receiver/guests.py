"""A fake v1 guest on a hybrid socket that answers configuration requests."""

import asyncio
import contextlib
import enum
import os
from pathlib import Path

from csm_wire.codec import FrameDecoder, FrameType, encode_frame
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response, encode_heartbeat

KERNEL_4_19 = (4 << 16) | (19 << 8)


class AnswerMode(enum.Enum):
    """How the fake guest answers a configuration request."""

    TYPE_4 = "type-4"
    # The 4.19 kernels send the response in a type-2 frame.
    TYPE_2 = "type-2"
    SILENT = "silent"


class AnsweringGuest:
    """Connects like a v1 kernel, records every frame the host sends, and
    answers each type-3 request as told."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        mode: AnswerMode,
        error: int = pb.ConfigurationResponse.NO_ERROR,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.mode = mode
        self.error = error
        self.frame_types: list[int] = []
        self.requests: list[pb.ConfigurationRequest] = []
        self.held: list[pb.ConfigurationRequest] = []
        self._received = asyncio.Condition()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, path: Path, mode: AnswerMode = AnswerMode.TYPE_4, **kwargs: int
    ) -> "AnsweringGuest":
        """Connect to a hybrid listener and say hello with a heartbeat."""
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        guest = cls(reader, writer, mode, **kwargs)
        writer.write(encode_heartbeat())
        await writer.drain()
        return guest

    def answer_frame(self) -> bytes:
        """The bytes of this guest's answer."""
        response = pb.ConfigurationResponse(
            error=self.error, msg="", version=1, kernel_version=KERNEL_4_19
        )
        if self.mode is AnswerMode.TYPE_2:
            return encode_frame(FrameType.EVENT, response.SerializeToString())
        return encode_config_response(response)

    async def _read(self) -> None:
        decoder = FrameDecoder(4096)
        while data := await self.reader.read(65536):
            for frame in decoder.feed(data):
                self.frame_types.append(frame.type)
                request = pb.ConfigurationRequest.FromString(frame.payload)
                async with self._received:
                    self.requests.append(request)
                    self._received.notify_all()
                if self.mode is AnswerMode.SILENT:
                    self.held.append(request)
                    continue
                self.writer.write(self.answer_frame())
                await self.writer.drain()

    async def wait_requests(self, count: int, timeout_s: float = 10) -> None:
        """Wait until ``count`` requests have arrived."""
        async with self._received:
            await asyncio.wait_for(
                self._received.wait_for(lambda: len(self.requests) >= count),
                timeout_s,
            )

    async def answer_late(self) -> None:
        """Answer the requests held so far (for a guest that was silent)."""
        for _ in self.held:
            self.writer.write(self.answer_frame())
        self.held.clear()
        await self.writer.drain()

    async def close(self) -> None:
        """Disconnect."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task
