"""Turn frames into CSM messages and back, with the 4.19 kernel quirk."""

from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from csm_wire.codec import Frame, FrameType, encode_frame
from csm_wire.errors import UndecodableFrame, UnknownFrameType
from csm_wire.gen import schema_pb2 as pb


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A guest's sign of life."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A decoded ``schema.Event`` with the size of its payload."""

    event: pb.Event
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class ConfigResponseMessage:
    """A guest's answer to a configuration request."""

    response: pb.ConfigurationResponse
    # The 4.19 kernels send the response as a type-2 frame.
    legacy_type: bool


GuestMessage = Heartbeat | EventMessage | ConfigResponseMessage


def _has_unknown_fields(message: Message) -> bool:
    return len(UnknownFieldSet(message)) > 0


def _parse(message: Message, payload: bytes, what: str) -> None:
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise UndecodableFrame(f"{what} payload does not decode: {exc}") from exc


def _as_legacy_response(payload: bytes) -> pb.ConfigurationResponse | None:
    """Return the response a type-2 payload carries, if it is one.

    A real event always sets its oneof and only known fields; a response's
    varint field 1 (or fields 3 and 4) are unknown to ``Event``.
    """
    response = pb.ConfigurationResponse()
    try:
        response.ParseFromString(payload)
    except DecodeError:
        return None
    if _has_unknown_fields(response):
        return None
    return response


def usable_event(payload: bytes) -> pb.Event | None:
    """The event ``payload`` holds, or None unless it is a usable one."""
    event = pb.Event()
    try:
        event.ParseFromString(payload)
    except DecodeError:
        return None
    if event.WhichOneof("event") is None or _has_unknown_fields(event):
        return None
    return event


def decode_guest_frame(frame: Frame) -> GuestMessage:
    """Decode one frame sent by a guest; raise a ``PayloadError`` if unusable."""
    if frame.type == FrameType.HEARTBEAT:
        return Heartbeat()
    if frame.type == FrameType.EVENT:
        event = usable_event(frame.payload)
        if event is not None:
            return EventMessage(event, len(frame.payload))
        legacy = _as_legacy_response(frame.payload)
        if legacy is not None:
            return ConfigResponseMessage(legacy, legacy_type=True)
        raise UndecodableFrame("type-2 payload is neither an event nor a response")
    if frame.type == FrameType.CONFIG_RESPONSE:
        response = pb.ConfigurationResponse()
        _parse(response, frame.payload, "configuration response")
        return ConfigResponseMessage(response, legacy_type=False)
    raise UnknownFrameType(f"frame type {frame.type} is not sent by a v1 guest")


def encode_config_request(request: pb.ConfigurationRequest) -> bytes:
    """Return the type-3 frame that carries a configuration request."""
    return encode_frame(FrameType.CONFIG_REQUEST, request.SerializeToString())


def encode_event(event: pb.Event) -> bytes:
    """Return the type-2 frame that carries an event."""
    return encode_frame(FrameType.EVENT, event.SerializeToString())


def encode_config_response(response: pb.ConfigurationResponse) -> bytes:
    """Return the type-4 frame that carries a configuration response."""
    return encode_frame(FrameType.CONFIG_RESPONSE, response.SerializeToString())


def encode_heartbeat() -> bytes:
    """Return a heartbeat frame."""
    return encode_frame(FrameType.HEARTBEAT)
