"""One guest connection: frames in, counters, heartbeats and configuration.

The session is transport-agnostic: it is handed bytes and callables to
write, to close and to pause reading. It never awaits. Events go through the
journal to the ingest queue, which pauses reading of the busiest VMs when
the store falls behind. A connection whose first frame is a v2 hello is
handed to a :class:`~receiver.sessions.v2link.V2Link`; any other connection
is v1 and only ever receives type-3 frames.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from csm_wire.codec import Frame, FrameDecoder
from csm_wire.errors import FramingError, UndecodableFrame, UnknownFrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import (
    ConfigResponseMessage,
    EventMessage,
    Heartbeat,
    decode_guest_frame,
    encode_config_request,
)
from csm_wire.v2 import HelloMessage, decode_v2_guest_frame, is_hello
from receiver.ingest.pipeline import IngestQueue, QueuedEvent
from receiver.ingest.records import RecordError, record_event
from receiver.sessions.accounting import GapCause, Overflow
from receiver.sessions.delivery import Delivery
from receiver.sessions.v2link import V2Link
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
        delivery: Delivery | None = None,
        pause: Callable[[], None] | None = None,
        resume: Callable[[], None] | None = None,
    ) -> None:
        self.vm = vm
        self.queue = queue
        self.delivery = delivery
        self.decoder = FrameDecoder(max_frame_bytes)
        self._write = write
        self._close = close
        self._pause = pause
        self._resume = resume
        self.v2: V2Link | None = None
        self.paused = False
        self._held: list[Frame] = []
        self._on_config_answer = on_config_answer
        # One entry per request sent, answered in order; None when nobody
        # waits for the answer (the push on connect).
        self._pending: deque[asyncio.Future[dict[str, Any]] | None] = deque()
        self.boot = 0
        self._initial_config: pb.ConfigurationRequest | None = None
        self._initial_generation: int | None = None
        self._greeted = False
        self.opened_at = time.monotonic()
        self.last_frame_at = self.opened_at
        self.frames = 0
        self.bytes = 0
        self.errors = 0
        self.closed = False
        # Set once the stream's framing broke: nothing after it is read.
        self.broken = False

    def open(
        self, config: pb.ConfigurationRequest | None, generation: int | None = None
    ) -> None:
        """Start the session; ``config`` is pushed once the guest speaks."""
        self.vm.sessions.add(self)
        self.vm.counters.connections += 1
        self.vm.note_heartbeat()
        self._initial_config = config
        self._initial_generation = generation
        if self.vm.delivery.paused:
            self.pause_reading()

    def _greet(self, first: Frame) -> None:
        # The guest opens with a frame (a v1 heartbeat, a v2 hello); answering
        # only then tells the protocols apart and never writes to a guest
        # that connected and left before it said anything.
        if is_hello(first) and self.delivery is not None:
            try:
                hello = decode_v2_guest_frame(first)
            except UndecodableFrame as exc:
                self.vm.warn(log, "hello", "closing: %s", exc)
                self.refuse()
                return
            assert isinstance(hello, HelloMessage)
            link = V2Link(self, self.delivery)
            if not link.start(hello):
                self.refuse()
                return
            self.v2 = link
        else:
            self.vm.protocol = "v1"
            self._infer_v1_reconnect_gap()
        if self._initial_config is not None:
            self._send_config(self._initial_config, None, self._initial_generation)
            self._initial_config = None

    def _send_config(
        self,
        config: pb.ConfigurationRequest,
        answer: asyncio.Future[dict[str, Any]] | None,
        generation: int | None,
    ) -> None:
        if self.v2 is not None:
            self.v2.push_config(config, answer, generation)
            return
        self._pending.append(answer)
        self._write(encode_config_request(config))

    def push_config(
        self, config: pb.ConfigurationRequest, generation: int | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send a configuration; the future resolves with the guest's answer.

        A v1 guest gets a type-3 request (answers come in order); a v2 guest
        gets ``generation`` (or the next one) and answers that generation.
        """
        answer: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        self._send_config(config, answer, generation)
        return answer

    def write(self, data: bytes) -> None:
        """Send bytes to the guest."""
        if not self.closed:
            self._write(data)

    def on_durable(self, durable_lsn: int) -> None:
        """The journal synced up to ``durable_lsn`` (v2 acknowledgements)."""
        if self.v2 is not None:
            self.v2.on_durable(durable_lsn)

    def pause_reading(self) -> None:
        """Stop reading from the guest (backpressure)."""
        if not self.paused and self._pause is not None:
            self.paused = True
            self._pause()

    def resume_reading(self) -> None:
        """Read from the guest again, starting with the frames held."""
        if self.paused and self._resume is not None:
            self.paused = False
            self.last_frame_at = time.monotonic()
            if self._held:
                asyncio.get_running_loop().call_soon(self._release_held)
            elif not self.closed:
                self._resume()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._process(held)
        if not self.paused and not self.closed and self._resume is not None:
            self._resume()

    def refuse(self) -> None:
        """Stop reading and close: nothing more from this connection is taken."""
        self.broken = True
        self._close()

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
        self._process(frames)

    def _process(self, frames: list[Frame]) -> None:
        counters = self.vm.counters
        received_at = time.time_ns()
        for index, frame in enumerate(frames):
            if self.broken:
                return
            if self.paused:
                # Hold the rest as wire bytes, far smaller than parsed
                # records, until the queue lets this VM read again.
                self._held.extend(frames[index:])
                return
            self.frames += 1
            counters.frames += 1
            if not self._greeted:
                self._greeted = True
                self._greet(frame)
                if self.v2 is not None or self.broken:
                    continue
            try:
                message = (
                    decode_guest_frame(frame)
                    if self.v2 is None
                    else decode_v2_guest_frame(frame)
                )
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
            if self.v2 is not None and self.v2.dispatch(message, received_at):
                continue
            self._dispatch(message, frame.payload, received_at)

    def _dispatch(self, message: object, payload: bytes, received_at: int) -> None:
        if isinstance(message, EventMessage):
            self._accept_event(message, payload, received_at)
        elif isinstance(message, Heartbeat):
            self.vm.counters.heartbeats += 1
            if self.vm.unhealthy and self.v2 is None:
                self._infer_v1_silence_gap()
            self.vm.note_heartbeat()
        elif isinstance(message, ConfigResponseMessage):
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
        if self.delivery is None:
            self.queue.offer(QueuedEvent(self.vm, record, payload, received_at))
            return
        lsn = self.delivery.accept_event(self.vm, record, payload, received_at)
        if lsn is None:
            self._note_overflow(record.boot, received_at)
        elif self.vm.delivery.overflow is not None:
            self._flush_overflow()

    # v1 gaps: a v1 guest cannot say what it lost, so the host infers it.

    def _record_gap(self, boot: int, cause: GapCause, **fields: Any) -> None:
        if self.delivery is not None:
            self.delivery.record_gap(self.vm, boot, cause, **fields)

    def _infer_v1_reconnect_gap(self) -> None:
        closed_at = self.vm.delivery.last_v1_close_ns
        if closed_at is None:
            return
        self.vm.delivery.last_v1_close_ns = None
        self._record_gap(
            self.vm.delivery.last_boot,
            GapCause.V1_RECONNECT,
            started_at=closed_at,
            ended_at=time.time_ns(),
        )

    def _infer_v1_silence_gap(self) -> None:
        last = self.vm.last_heartbeat
        self._record_gap(
            self.boot,
            GapCause.V1_HEARTBEAT_SILENCE,
            started_at=int(last * 1e9) if last else None,
            ended_at=time.time_ns(),
        )

    def _note_overflow(self, boot: int, at: int) -> None:
        overflow = self.vm.delivery.overflow
        if overflow is None or overflow.boot != boot:
            self._flush_overflow()
            self.vm.delivery.overflow = Overflow(boot, 1, at, at)
            return
        overflow.count += 1
        overflow.last_at = at

    def _flush_overflow(self) -> None:
        overflow = self.vm.delivery.overflow
        if overflow is None:
            return
        self.vm.delivery.overflow = None
        self._record_gap(
            overflow.boot,
            GapCause.HOST_OVERFLOW,
            count=overflow.count,
            started_at=overflow.first_at,
            ended_at=overflow.last_at,
        )

    def _accept_config_answer(self, message: ConfigResponseMessage) -> None:
        pending = self._pending.popleft() if self._pending else None
        self.config_answered(message.response, pending, None, message.legacy_type)

    def config_answered(
        self,
        response: pb.ConfigurationResponse,
        waiter: asyncio.Future[dict[str, Any]] | None,
        generation: int | None,
        legacy_type: bool = False,
    ) -> None:
        """Record the guest's answer and wake whoever waits for it."""
        self.vm.counters.config_responses += 1
        answer = describe_response(ConfigResponseMessage(response, legacy_type))
        if generation is not None:
            answer["generation"] = generation
        self.vm.config_response = answer
        log.info(
            "vm %s: configuration answer %s (CSM version %d, kernel %#x)",
            self.vm.name,
            answer["error"],
            response.version,
            response.kernel_version,
        )
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
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
        if self.v2 is not None:
            self.v2.closed()
        elif self.vm.protocol == "v1" and self._greeted:
            self._flush_overflow()
            self.vm.delivery.last_v1_close_ns = time.time_ns()
            self.vm.delivery.last_boot = self.boot
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
