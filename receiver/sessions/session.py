"""One guest connection: frames in, counters, heartbeats and configuration.

The session is transport-agnostic: it is handed bytes and two callables to
write and to close. It never awaits, so a socket is drained as fast as it
delivers; events go to the ingest queue, which decides what to drop.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from csm_wire.codec import FrameDecoder
from csm_wire.errors import FramingError, UndecodableFrame, UnknownFrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import (
    ConfigResponseMessage,
    EventMessage,
    Heartbeat,
    decode_guest_frame,
    encode_config_request,
)
from receiver.ingest.pipeline import IngestQueue, QueuedEvent
from receiver.ingest.records import RecordError, record_event
from receiver.sessions.vm import DropCause, VmState

log = logging.getLogger(__name__)

ConfigAnswerCallback = Callable[[VmState, dict[str, Any]], None]


def describe_response(message: ConfigResponseMessage) -> dict[str, Any]:
    """A guest's configuration response as JSON-ready data."""
    response = message.response
    return {
        "error": pb.ConfigurationResponse.ErrorCode.Name(response.error)
        if response.error in pb.ConfigurationResponse.ErrorCode.values()
        else str(response.error),
        "msg": response.msg,
        "version": response.version,
        "kernel_version": response.kernel_version,
        "legacy_type": message.legacy_type,
        "received_at": time.time(),
    }


class GuestSession:
    """The receiving end of one guest connection."""

    def __init__(
        self,
        vm: VmState,
        queue: IngestQueue,
        *,
        max_frame_bytes: int,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        on_config_answer: ConfigAnswerCallback | None = None,
    ) -> None:
        self.vm = vm
        self.queue = queue
        self.decoder = FrameDecoder(max_frame_bytes)
        self._write = write
        self._close = close
        self._on_config_answer = on_config_answer
        # One entry per request sent, answered in order; None when nobody
        # waits for the answer (the push on connect).
        self._pending: deque[asyncio.Future[dict[str, Any]] | None] = deque()
        self.boot = 0
        self._initial_config: pb.ConfigurationRequest | None = None
        self._greeted = False
        self.opened_at = time.monotonic()
        self.last_frame_at = self.opened_at
        self.frames = 0
        self.bytes = 0
        self.errors = 0
        self.closed = False
        # Set once the stream's framing broke: nothing after it is read.
        self.broken = False

    def open(self, config: pb.ConfigurationRequest | None) -> None:
        """Start the session; ``config`` is pushed once the guest speaks."""
        self.vm.sessions.add(self)
        self.vm.counters.connections += 1
        self.vm.note_heartbeat()
        self._initial_config = config

    def _greet(self) -> None:
        # The guest opens with a frame (a v1 heartbeat, a v2 hello); answering
        # only then tells the protocols apart and never writes to a guest
        # that connected and left before it said anything.
        self.vm.protocol = "v1"
        if self._initial_config is not None:
            self._pending.append(None)
            self._write(encode_config_request(self._initial_config))
            self._initial_config = None

    def push_config(
        self, config: pb.ConfigurationRequest
    ) -> asyncio.Future[dict[str, Any]]:
        """Send a type-3 request; the future resolves with the guest's answer."""
        answer: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append(answer)
        self._write(encode_config_request(config))
        return answer

    def feed(self, data: bytes) -> None:
        """Handle bytes received from the guest."""
        if self.broken:
            return
        counters = self.vm.counters
        counters.bytes += len(data)
        self.bytes += len(data)
        try:
            frames = self.decoder.feed(data)
        except FramingError as exc:
            counters.framing_errors += 1
            self.errors += 1
            self.broken = True
            self.vm.warn(log, "framing", "closing connection: %s", exc)
            self._close()
            return
        if frames:
            self.last_frame_at = time.monotonic()
        received_at = time.time_ns()
        for frame in frames:
            self.frames += 1
            counters.frames += 1
            try:
                message = decode_guest_frame(frame)
            except UnknownFrameType as exc:
                counters.unknown_frame_types += 1
                self.errors += 1
                self.vm.warn(log, "frame-type", "skipped: %s", exc)
                continue
            except UndecodableFrame as exc:
                counters.decode_errors += 1
                self.errors += 1
                self.vm.warn(log, "decode", "skipped: %s", exc)
                continue
            self._dispatch(message, frame.payload, received_at)
        if frames and not self._greeted:
            self._greeted = True
            self._greet()

    def _dispatch(
        self,
        message: Heartbeat | EventMessage | ConfigResponseMessage,
        payload: bytes,
        received_at: int,
    ) -> None:
        if isinstance(message, EventMessage):
            self._accept_event(message, payload, received_at)
        elif isinstance(message, Heartbeat):
            self.vm.counters.heartbeats += 1
            self.vm.note_heartbeat()
        else:
            self._accept_config_answer(message)

    def _accept_event(
        self, message: EventMessage, payload: bytes, received_at: int
    ) -> None:
        counters = self.vm.counters
        counters.events += 1
        try:
            record = record_event(self.vm.vm_id, message.event, self.boot)
        except RecordError as exc:
            counters.drops[DropCause.UNUSABLE_EVENT] += 1
            self.errors += 1
            self.vm.warn(log, "record", "event dropped: %s", exc)
            return
        refused = self.vm.identities.admit(record)
        if refused is not None:
            counters.drops[refused] += 1
            self.vm.warn(log, str(refused), "event dropped: %s reached", refused)
            return
        self.boot = record.boot
        self.queue.offer(QueuedEvent(self.vm, record, payload, received_at))

    def _accept_config_answer(self, message: ConfigResponseMessage) -> None:
        self.vm.counters.config_responses += 1
        answer = describe_response(message)
        self.vm.config_response = answer
        log.info(
            "vm %s: configuration answer %s (CSM version %d, kernel %#x)",
            self.vm.name,
            answer["error"],
            message.response.version,
            message.response.kernel_version,
        )
        if self._pending:
            pending = self._pending.popleft()
            if pending is not None and not pending.done():
                pending.set_result(answer)
        if self._on_config_answer is not None:
            self._on_config_answer(self.vm, answer)

    def close(self) -> None:
        """Close the connection from the host side."""
        self._close()

    def closed_by_peer(self) -> None:
        """Account for the end of the connection, whoever ended it."""
        if self.closed:
            return
        self.closed = True
        self.vm.sessions.discard(self)
        if self.decoder.buffered_bytes and not self.broken:
            self.vm.counters.truncated_frames += 1
            self.errors += 1
            self.vm.warn(
                log,
                "truncated",
                "connection ended inside a frame (%d bytes held)",
                self.decoder.buffered_bytes,
            )
        for pending in self._pending:
            if pending is not None and not pending.done():
                pending.set_exception(ConnectionError("guest disconnected"))
        self._pending.clear()
        log.info(
            "vm %s: connection closed after %.1fs: %d frames, %d bytes, %d errors",
            self.vm.name,
            time.monotonic() - self.opened_at,
            self.frames,
            self.bytes,
            self.errors,
        )


def config_as_dict(config: pb.ConfigurationRequest) -> dict[str, Any]:
    """A configuration request as JSON-ready data."""
    return MessageToDict(config, preserving_proto_field_name=True)
