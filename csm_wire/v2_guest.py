"""The guest's end of protocol v2, sans-IO: sequence, replay, report, count.

A :class:`GuestStream` lives for one guest boot (one agent process) and
outlives its connections. The agent hands it every event it produces and
the bytes the host sends; it writes whatever :meth:`GuestStream.data_to_send`
returns. Per connection::

    stream.connect(now)            -> the hello to write first
    stream.receive(data)           -> host config requests to apply
    stream.data_to_send()          -> replay, loss reports and new events
    stream.tick(now)               -> heartbeats, counters, v1 fallback
    stream.disconnected()          -> when the socket ends, then reconnect

Events wait in a bounded replay buffer until the host acknowledges them.
When it is full, newer events are dropped and their sequence numbers are
reported as lost once a connection is up again, so the host can tell a gap
from an outage. A host that answers the hello with a v1 configuration
request (or not at all) is spoken to in v1: plain events, no replay.
"""

import enum
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from csm_wire.codec import Frame, FrameDecoder, FrameType, encode_frame
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response, encode_heartbeat
from csm_wire.v2 import (
    CAPABILITIES,
    PROTOCOL_VERSION,
    encode_config_response_v2,
    encode_guest_counters,
    encode_hello,
    encode_loss_report,
    encode_sequenced_event,
)

DEFAULT_REPLAY_CAPACITY_EVENTS = 65_536
DEFAULT_REPLAY_CAPACITY_BYTES = 64 << 20
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_COUNTERS_INTERVAL_S = 10.0
# A v1 host skips the hello as an unknown frame; after this long without an
# answer the guest speaks v1 on the same connection.
DEFAULT_HELLO_TIMEOUT_S = 5.0
HOST_MAX_FRAME_BYTES = 1 << 20

LossCause = v2pb.LossReport.Cause


class StreamState(enum.Enum):
    """Where the current connection stands."""

    DISCONNECTED = "disconnected"
    AWAITING_HELLO = "awaiting-hello"
    V2 = "v2"
    V1 = "v1"


@dataclass(slots=True)
class _Entry:
    """One buffered event, or a range of lost sequence numbers."""

    first_seq: int
    last_seq: int
    payload: bytes | None
    cause: int = 0
    first_timestamp: int = 0
    last_timestamp: int = 0

    def frame(self) -> bytes:
        if self.payload is not None:
            return encode_sequenced_event(self.first_seq, self.payload)
        return encode_loss_report(
            v2pb.LossReport(
                first_seq=self.first_seq,
                last_seq=self.last_seq,
                count=self.last_seq - self.first_seq + 1,
                cause=self.cause,  # type: ignore[arg-type]
                first_timestamp=self.first_timestamp,
                last_timestamp=self.last_timestamp,
            )
        )


@dataclass(frozen=True, slots=True)
class HostConfig:
    """A configuration the host asked for; ``request`` is None if undecodable.

    ``generation`` is None when a v1 host sent it.
    """

    generation: int | None
    request: pb.ConfigurationRequest | None


@dataclass(slots=True)
class StreamCounters:
    """What the stream did since the agent started."""

    produced: int = 0
    sent: int = 0
    acked: int = 0
    replayed: int = 0
    reconnects: int = 0
    ignored_host_frames: int = 0


class GuestStream:
    """Sequence numbers, replay buffer and loss reports of one guest boot."""

    def __init__(
        self,
        machine_id: int,
        *,
        software_version: str,
        kernel_version: int = 0,
        replay_capacity_events: int = DEFAULT_REPLAY_CAPACITY_EVENTS,
        replay_capacity_bytes: int = DEFAULT_REPLAY_CAPACITY_BYTES,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        counters_interval_s: float = DEFAULT_COUNTERS_INTERVAL_S,
        hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S,
        capabilities: tuple[str, ...] = CAPABILITIES,
    ) -> None:
        if not 0 < machine_id < 1 << 32:
            raise ValueError("machine_id must be a non-zero u32")
        if replay_capacity_events < 1:
            raise ValueError("the replay buffer must hold at least one event")
        self.machine_id = machine_id
        self.software_version = software_version
        self.kernel_version = kernel_version
        self.replay_capacity_events = replay_capacity_events
        self.replay_capacity_bytes = replay_capacity_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.counters_interval_s = counters_interval_s
        self.hello_timeout_s = hello_timeout_s
        self.capabilities = capabilities
        self.state = StreamState.DISCONNECTED
        self.host_hello: v2pb.Hello | None = None
        self.next_seq = 1
        self.acked_seq = 0
        self.counters = StreamCounters()
        self.drops: Counter[str] = Counter()
        self._entries: deque[_Entry] = deque()
        self._send_index = 0
        self._buffered_events = 0
        self._buffered_bytes = 0
        self._highest_sent = 0
        self._decoder = FrameDecoder(HOST_MAX_FRAME_BYTES)
        self._connections = 0
        self._connected_at = 0.0
        self._next_heartbeat = 0.0
        self._next_counters = 0.0

    # Producing.

    @property
    def buffered_events(self) -> int:
        """Events held until the host acknowledges them."""
        return self._buffered_events

    @property
    def unsent_entries(self) -> int:
        """Events and loss reports not yet written on this connection."""
        return len(self._entries) - self._send_index

    def produce(self, event: pb.Event | bytes, timestamp: int = 0) -> int | None:
        """Number and buffer one event; None if the buffer was full (lost).

        The sequence number of a lost event is still used, and reported.
        """
        payload = event if isinstance(event, bytes) else event.SerializeToString()
        if not timestamp and isinstance(event, pb.Event):
            timestamp = event.timestamp
        seq = self.next_seq
        self.next_seq += 1
        self.counters.produced += 1
        full = self._buffered_events >= self.replay_capacity_events
        full = full or self._buffered_bytes + len(payload) > self.replay_capacity_bytes
        if full:
            self._lose(seq, seq, LossCause.REPLAY_BUFFER_FULL, timestamp, timestamp)
            return None
        self._entries.append(_Entry(seq, seq, payload))
        self._buffered_events += 1
        self._buffered_bytes += len(payload)
        return seq

    def note_lost(
        self,
        count: int,
        cause: int = LossCause.SOURCE_OVERFLOW,
        first_timestamp: int = 0,
        last_timestamp: int = 0,
    ) -> None:
        """Account for ``count`` events lost before they reached the stream."""
        if count < 1:
            return
        first = self.next_seq
        self.next_seq += count
        self.counters.produced += count
        self._lose(first, first + count - 1, cause, first_timestamp, last_timestamp)

    def _lose(
        self, first: int, last: int, cause: int, first_ts: int, last_ts: int
    ) -> None:
        self.drops[LossCause.Name(cause).lower()] += last - first + 1
        tail = self._entries[-1] if self._entries else None
        mergeable = (
            tail is not None
            and tail.payload is None
            and tail.cause == cause
            and tail.last_seq + 1 == first
            and len(self._entries) > self._send_index
        )
        if tail is not None and mergeable:
            tail.last_seq = last
            tail.last_timestamp = last_ts or tail.last_timestamp
            return
        self._entries.append(_Entry(first, last, None, cause, first_ts, last_ts))

    # Connections.

    def connect(self, now: float) -> bytes:
        """Start a connection; return the hello to send first."""
        if self._connections:
            self.counters.reconnects += 1
        self._connections += 1
        self.state = StreamState.AWAITING_HELLO
        self._decoder = FrameDecoder(HOST_MAX_FRAME_BYTES)
        self._send_index = 0
        self._connected_at = now
        self._next_heartbeat = now + self.heartbeat_interval_s
        self._next_counters = now + self.counters_interval_s
        hello = v2pb.Hello(
            protocol_version=PROTOCOL_VERSION,
            software_version=self.software_version,
            kernel_version=self.kernel_version,
            machine_id=self.machine_id,
            capabilities=list(self.capabilities),
            replay_capacity_events=self.replay_capacity_events,
            acked_seq=self.acked_seq,
            next_seq=self.next_seq,
        )
        return encode_hello(hello)

    def disconnected(self) -> None:
        """The connection ended: everything unacknowledged will be replayed."""
        self.state = StreamState.DISCONNECTED
        self._send_index = 0

    def receive(self, data: bytes) -> list[HostConfig]:
        """Handle bytes from the host; return the configurations it asked for.

        Raises a ``FramingError`` if the host's stream cannot be framed; the
        agent should then drop the connection.
        """
        configs: list[HostConfig] = []
        for frame in self._decoder.feed(data):
            config = self._handle(frame)
            if config is not None:
                configs.append(config)
        return configs

    def _handle(self, frame: Frame) -> HostConfig | None:
        if frame.type == FrameType.CONFIG_REQUEST:
            if self.state is StreamState.AWAITING_HELLO:
                self._fall_back_to_v1()
            return HostConfig(None, _parse_request(frame.payload))
        if self.state is StreamState.V1:
            self.counters.ignored_host_frames += 1
            return None
        if frame.type == FrameType.HELLO and self.state is StreamState.AWAITING_HELLO:
            hello = v2pb.Hello()
            try:
                hello.ParseFromString(frame.payload)
            except DecodeError:
                self.counters.ignored_host_frames += 1
                return None
            self._on_host_hello(hello)
        elif frame.type == FrameType.ACK and self.state is StreamState.V2:
            ack = v2pb.Ack()
            try:
                ack.ParseFromString(frame.payload)
            except DecodeError:
                self.counters.ignored_host_frames += 1
                return None
            if ack.machine_id == self.machine_id:
                self._release(ack.seq)
        elif frame.type == FrameType.CONFIG_REQUEST_V2:
            message = v2pb.ConfigRequestV2()
            try:
                message.ParseFromString(frame.payload)
            except DecodeError:
                return HostConfig(None, None)
            return HostConfig(message.generation, _parse_request(message.request))
        else:
            self.counters.ignored_host_frames += 1
        return None

    def _on_host_hello(self, hello: v2pb.Hello) -> None:
        self.host_hello = hello
        self.state = StreamState.V2
        first = self._entries[0].first_seq if self._entries else self.next_seq
        if not self._highest_sent and hello.acked_seq >= first:
            # A fresh agent in a boot the host already knows: its counter
            # restarted, so move past what the host holds instead of having
            # every new event dropped as a duplicate.
            shift = hello.acked_seq + 1 - first
            for entry in self._entries:
                entry.first_seq += shift
                entry.last_seq += shift
            self.next_seq += shift
            self.acked_seq = hello.acked_seq
            return
        self._release(hello.acked_seq)

    def _fall_back_to_v1(self) -> None:
        self.state = StreamState.V1

    def _release(self, seq: int) -> None:
        if seq <= self.acked_seq:
            return
        self.acked_seq = seq
        entries = self._entries
        while entries and entries[0].last_seq <= seq:
            entry = entries.popleft()
            if entry.payload is not None:
                self._buffered_events -= 1
                self._buffered_bytes -= len(entry.payload)
                self.counters.acked += 1
            if self._send_index:
                self._send_index -= 1

    # Writing.

    def data_to_send(self, max_bytes: int = 1 << 20) -> bytes:
        """Frames due on the connection now: replay, losses, new events."""
        if self.state is StreamState.V1:
            return self._v1_data(max_bytes)
        if self.state is not StreamState.V2:
            return b""
        chunks: list[bytes] = []
        size = 0
        entries = self._entries
        while self._send_index < len(entries) and size < max_bytes:
            entry = entries[self._send_index]
            frame = entry.frame()
            chunks.append(frame)
            size += len(frame)
            self._send_index += 1
            if entry.payload is not None:
                self.counters.sent += 1
                if entry.last_seq <= self._highest_sent:
                    self.counters.replayed += 1
            self._highest_sent = max(self._highest_sent, entry.last_seq)
        return b"".join(chunks)

    def _v1_data(self, max_bytes: int) -> bytes:
        # v1 has no acknowledgements: an event is done once written.
        chunks: list[bytes] = []
        size = 0
        entries = self._entries
        while entries and size < max_bytes:
            entry = entries.popleft()
            if entry.payload is None:
                continue
            frame = encode_frame(FrameType.EVENT, entry.payload)
            chunks.append(frame)
            size += len(frame)
            self._buffered_events -= 1
            self._buffered_bytes -= len(entry.payload)
            self.counters.sent += 1
            self._highest_sent = max(self._highest_sent, entry.last_seq)
        return b"".join(chunks)

    def tick(
        self,
        now: float,
        queue_depth: int = 0,
        extra_drops: Mapping[str, int] | None = None,
    ) -> bytes:
        """Heartbeats and counters due at ``now``; falls back to v1 on silence.

        ``extra_drops`` are the agent's own losses by cause (events it never
        handed to the stream), added to the counters the host receives.
        """
        if self.state is StreamState.DISCONNECTED:
            return b""
        if (
            self.state is StreamState.AWAITING_HELLO
            and now - self._connected_at >= self.hello_timeout_s
        ):
            self._fall_back_to_v1()
        out = b""
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval_s
            out += encode_heartbeat()
        if self.state is StreamState.V2 and now >= self._next_counters:
            self._next_counters = now + self.counters_interval_s
            out += self.counters_frame(queue_depth, extra_drops=extra_drops)
        return out

    def counters_frame(
        self,
        queue_depth: int = 0,
        timestamp: int = 0,
        extra_drops: Mapping[str, int] | None = None,
    ) -> bytes:
        """A counters frame describing the stream now."""
        counters = self.counters
        drops = Counter(self.drops)
        for cause, count in (extra_drops or {}).items():
            if count:
                drops[cause] += count
        message = v2pb.GuestCounters(
            events_produced=counters.produced,
            events_sent=counters.sent,
            events_acked=counters.acked,
            events_replayed=counters.replayed,
            replay_buffer_events=self._buffered_events,
            replay_buffer_bytes=self._buffered_bytes,
            replay_buffer_capacity=self.replay_capacity_events,
            queue_depth=queue_depth,
            drops=dict(drops),
            reconnects=counters.reconnects,
            timestamp=timestamp,
        )
        return encode_guest_counters(message)

    def answer_config(
        self, config: HostConfig, response: pb.ConfigurationResponse
    ) -> bytes:
        """The frame answering ``config``, in the protocol it came in."""
        if config.generation is None:
            return encode_config_response(response)
        return encode_config_response_v2(config.generation, response)


def _parse_request(payload: bytes) -> pb.ConfigurationRequest | None:
    request = pb.ConfigurationRequest()
    try:
        request.ParseFromString(payload)
    except DecodeError:
        return None
    return request
