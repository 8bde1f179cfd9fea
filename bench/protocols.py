"""How a simulated guest speaks to the host, one class per protocol version.

The fleet simulator only calls the methods of :class:`GuestProtocol`, so a
new protocol version is one more class in :data:`PROTOCOLS`.
"""

from typing import ClassVar, Protocol

from google.protobuf.message import DecodeError

from csm_wire.codec import Frame, FrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response, encode_event, encode_heartbeat

# LINUX_VERSION_CODE of 4.19.0, what a COS guest kernel reports.
KERNEL_4_19 = (4 << 16) | (19 << 8)
CSM_VERSION = 1


class GuestProtocol(Protocol):
    """The guest side of one connection."""

    name: ClassVar[str]

    def opening(self) -> bytes:
        """What the guest sends right after connecting."""

    def heartbeat(self) -> bytes:
        """A sign of life, sent periodically."""

    def event_frame(self, event: pb.Event) -> bytes:
        """The wire bytes of one event."""

    def answer(self, frame: Frame) -> bytes | None:
        """The reply to a frame from the host, if any."""


class V1Guest:
    """A real CSM kernel: heartbeats, type-2 events, type-4 config answers."""

    name: ClassVar[str] = "v1"

    def opening(self) -> bytes:
        """A v1 kernel greets with a heartbeat."""
        return encode_heartbeat()

    def heartbeat(self) -> bytes:
        """A heartbeat frame."""
        return encode_heartbeat()

    def event_frame(self, event: pb.Event) -> bytes:
        """A type-2 frame."""
        return encode_event(event)

    def answer(self, frame: Frame) -> bytes | None:
        """Accept any configuration request, as a kernel that decoded it."""
        if frame.type != FrameType.CONFIG_REQUEST:
            return None
        request = pb.ConfigurationRequest()
        try:
            request.ParseFromString(frame.payload)
        except DecodeError:
            error = pb.ConfigurationResponse.UNKNOWN
        else:
            error = pb.ConfigurationResponse.NO_ERROR
        response = pb.ConfigurationResponse(
            error=error, version=CSM_VERSION, kernel_version=KERNEL_4_19
        )
        return encode_config_response(response)


PROTOCOLS: dict[str, type[GuestProtocol]] = {V1Guest.name: V1Guest}


def make_protocol(name: str) -> GuestProtocol:
    """The guest protocol called ``name``; KeyError if there is none."""
    return PROTOCOLS[name]()
