"""Sans-IO framing for CSM: an incremental decoder and an encoder.

A frame is an 8-byte header (u32 type, u32 total length, both little-endian)
and then ``length - 8`` bytes of payload. The decoder owns no socket: feed it
whatever chunks arrive and it returns the complete frames.
"""

import enum
import struct
from dataclasses import dataclass

from csm_wire.errors import FrameTooLong, FrameTooShort

HEADER = struct.Struct("<II")
HEADER_BYTES = HEADER.size
# Guests send events of a few KiB; a megabyte leaves room for huge argv
# without letting a guest make the host buffer arbitrary amounts.
DEFAULT_MAX_FRAME_BYTES = 1 << 20
# A v1 guest kernel reads configuration into one page, header included.
MAX_GUEST_CONFIG_FRAME_BYTES = 4096


class FrameType(enum.IntEnum):
    """Frame types of protocol v1 and of the v2 extension."""

    HEARTBEAT = 1
    EVENT = 2
    CONFIG_REQUEST = 3
    CONFIG_RESPONSE = 4
    # v2 extension: numbers well above v1's, so a v1 peer never mistakes them.
    HELLO = 64
    SEQUENCED_EVENT = 65
    ACK = 66
    LOSS_REPORT = 67
    GUEST_COUNTERS = 68
    CONFIG_REQUEST_V2 = 69
    CONFIG_RESPONSE_V2 = 70


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its raw type number and payload bytes."""

    type: int
    payload: bytes

    @property
    def wire_size(self) -> int:
        """Bytes this frame took on the wire, header included."""
        return HEADER_BYTES + len(self.payload)


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """Return the wire bytes of one frame."""
    return HEADER.pack(frame_type, HEADER_BYTES + len(payload)) + payload


class FrameDecoder:
    """Incremental frame decoder that accepts any chunking of the stream.

    ``feed`` raises a :class:`~csm_wire.errors.FramingError` as soon as a
    header is impossible; the decoder is then unusable, as is the stream.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < HEADER_BYTES:
            raise ValueError("max_frame_bytes must leave room for the header")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._need: int | None = None
        self._type = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes and return every frame they complete."""
        self._buffer += data
        frames: list[Frame] = []
        offset = 0
        buffer = self._buffer
        available = len(buffer)
        while True:
            if self._need is None:
                if available - offset < HEADER_BYTES:
                    break
                frame_type, length = HEADER.unpack_from(buffer, offset)
                self._check_length(length)
                self._type = frame_type
                self._need = length
            if available - offset < self._need:
                break
            end = offset + self._need
            frames.append(Frame(self._type, bytes(buffer[offset + HEADER_BYTES : end])))
            offset = end
            self._need = None
        if offset:
            del buffer[:offset]
        return frames

    def _check_length(self, length: int) -> None:
        if length < HEADER_BYTES:
            raise FrameTooShort(f"frame length {length} is below the header size")
        if length > self.max_frame_bytes:
            raise FrameTooLong(
                f"frame length {length} exceeds the limit of {self.max_frame_bytes}"
            )
