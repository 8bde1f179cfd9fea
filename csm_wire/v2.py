"""Protocol v2 messages: decoding and encoding for both ends.

v2 adds a hello, sequence numbers, acknowledgements, loss reports, guest
counters and configuration generations on frame types 64 and up. The guest
side's state machine lives in :mod:`csm_wire.v2_guest`; the host side in the
receiver's sessions. Everything here is sans-IO.
"""

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from csm_wire.codec import Frame, FrameType, encode_frame
from csm_wire.errors import UndecodableFrame
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import (
    EventMessage,
    GuestMessage,
    decode_guest_frame,
    usable_event,
)

PROTOCOL_VERSION = 2
# Sequences are stored in signed 64-bit columns.
MAX_SEQ = (1 << 63) - 1
MAX_CAPABILITIES = 32
MAX_NAME_BYTES = 128
MAX_COUNTER_DROPS = 64

CAPABILITY_ACK = "ack"
CAPABILITY_LOSS_REPORT = "loss-report"
CAPABILITY_COUNTERS = "counters"
CAPABILITY_CONFIG_GENERATION = "config-generation"
CAPABILITIES = (
    CAPABILITY_ACK,
    CAPABILITY_LOSS_REPORT,
    CAPABILITY_COUNTERS,
    CAPABILITY_CONFIG_GENERATION,
)


@dataclass(frozen=True, slots=True)
class HelloMessage:
    """The opening of a v2 connection (either direction)."""

    hello: v2pb.Hello


@dataclass(frozen=True, slots=True)
class SequencedEventMessage:
    """An event with its per-boot sequence number."""

    seq: int
    event: EventMessage
    payload: bytes


@dataclass(frozen=True, slots=True)
class LossReportMessage:
    """A range of sequence numbers the guest lost, and why."""

    report: v2pb.LossReport

    @property
    def cause(self) -> str:
        """The cause's name in lower case, as the host records it."""
        cause = self.report.cause
        if cause not in v2pb.LossReport.Cause.values():
            return f"cause_{cause}"
        return v2pb.LossReport.Cause.Name(cause).lower()


@dataclass(frozen=True, slots=True)
class CountersMessage:
    """The guest's periodic counters."""

    counters: v2pb.GuestCounters


@dataclass(frozen=True, slots=True)
class GenerationResponseMessage:
    """The guest's answer to the configuration of one generation."""

    generation: int
    response: pb.ConfigurationResponse


M = TypeVar("M", bound=Message)

V2GuestMessage = (
    GuestMessage
    | HelloMessage
    | SequencedEventMessage
    | LossReportMessage
    | CountersMessage
    | GenerationResponseMessage
)


def _parse(message: M, payload: bytes, what: str) -> M:
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise UndecodableFrame(f"{what} payload does not decode: {exc}") from exc
    return message


def _check_seq(seq: int, what: str) -> None:
    if not 0 < seq <= MAX_SEQ:
        raise UndecodableFrame(f"{what} sequence {seq} is out of range")


def _check_hello(hello: v2pb.Hello) -> v2pb.Hello:
    if len(hello.capabilities) > MAX_CAPABILITIES:
        raise UndecodableFrame(f"hello lists {len(hello.capabilities)} capabilities")
    names = [*hello.capabilities, hello.software_version]
    if any(len(name.encode()) > MAX_NAME_BYTES for name in names):
        raise UndecodableFrame("hello carries an over-long name")
    if hello.acked_seq > MAX_SEQ or hello.next_seq > MAX_SEQ:
        raise UndecodableFrame("hello sequence out of range")
    return hello


def _check_loss(report: v2pb.LossReport) -> v2pb.LossReport:
    _check_seq(report.first_seq, "loss report")
    _check_seq(report.last_seq, "loss report")
    span = report.last_seq - report.first_seq + 1
    if span < 1 or report.count != span:
        raise UndecodableFrame(
            f"loss report {report.first_seq}-{report.last_seq} "
            f"does not cover {report.count} events"
        )
    return report


def _check_counters(counters: v2pb.GuestCounters) -> v2pb.GuestCounters:
    if len(counters.drops) > MAX_COUNTER_DROPS:
        raise UndecodableFrame(f"counters carry {len(counters.drops)} drop causes")
    if any(len(name.encode()) > MAX_NAME_BYTES for name in counters.drops):
        raise UndecodableFrame("counters carry an over-long cause name")
    return counters


def decode_v2_guest_frame(frame: Frame) -> V2GuestMessage:
    """Decode a frame from a guest that said hello; raise a ``PayloadError``."""
    kind = frame.type
    if kind == FrameType.SEQUENCED_EVENT:
        sequenced = _parse(v2pb.SequencedEvent(), frame.payload, "sequenced event")
        _check_seq(sequenced.seq, "event")
        event = usable_event(sequenced.event)
        if event is None:
            raise UndecodableFrame("sequenced event does not carry a usable event")
        return SequencedEventMessage(
            sequenced.seq, EventMessage(event, len(sequenced.event)), sequenced.event
        )
    if kind == FrameType.HELLO:
        return HelloMessage(_check_hello(_parse(v2pb.Hello(), frame.payload, "hello")))
    if kind == FrameType.LOSS_REPORT:
        report = _parse(v2pb.LossReport(), frame.payload, "loss report")
        return LossReportMessage(_check_loss(report))
    if kind == FrameType.GUEST_COUNTERS:
        counters = _parse(v2pb.GuestCounters(), frame.payload, "guest counters")
        return CountersMessage(_check_counters(counters))
    if kind == FrameType.CONFIG_RESPONSE_V2:
        answer = _parse(v2pb.ConfigResponseV2(), frame.payload, "config response")
        response = _parse(
            pb.ConfigurationResponse(), answer.response, "config response"
        )
        return GenerationResponseMessage(answer.generation, response)
    return decode_guest_frame(frame)


def is_hello(frame: Frame) -> bool:
    """True if ``frame`` opens a v2 connection."""
    return frame.type == FrameType.HELLO


# Host to guest.


def encode_hello(hello: v2pb.Hello) -> bytes:
    """Return a hello frame (both directions use the same message)."""
    return encode_frame(FrameType.HELLO, hello.SerializeToString())


def encode_ack(machine_id: int, seq: int) -> bytes:
    """Return the frame acknowledging every sequence up to ``seq``."""
    ack = v2pb.Ack(machine_id=machine_id, seq=seq)
    return encode_frame(FrameType.ACK, ack.SerializeToString())


def encode_config_request_v2(
    generation: int, request: pb.ConfigurationRequest
) -> bytes:
    """Return the frame carrying configuration ``generation``."""
    message = v2pb.ConfigRequestV2(
        generation=generation, request=request.SerializeToString()
    )
    return encode_frame(FrameType.CONFIG_REQUEST_V2, message.SerializeToString())


# Guest to host.


def encode_sequenced_event(seq: int, event: bytes) -> bytes:
    """Return the frame carrying a serialized ``schema.Event`` as ``seq``."""
    message = v2pb.SequencedEvent(seq=seq, event=event)
    return encode_frame(FrameType.SEQUENCED_EVENT, message.SerializeToString())


def encode_loss_report(report: v2pb.LossReport) -> bytes:
    """Return a loss report frame."""
    return encode_frame(FrameType.LOSS_REPORT, report.SerializeToString())


def encode_guest_counters(counters: v2pb.GuestCounters) -> bytes:
    """Return a guest counters frame."""
    return encode_frame(FrameType.GUEST_COUNTERS, counters.SerializeToString())


def encode_config_response_v2(
    generation: int, response: pb.ConfigurationResponse
) -> bytes:
    """Return the answer to configuration ``generation``."""
    message = v2pb.ConfigResponseV2(
        generation=generation, response=response.SerializeToString()
    )
    return encode_frame(FrameType.CONFIG_RESPONSE_V2, message.SerializeToString())
