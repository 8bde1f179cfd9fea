"""The sans-IO codec: any chunking, typed errors, and the 4.19 quirk."""

import random

import pytest

from csm_wire.codec import (
    HEADER,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from csm_wire.errors import (
    FrameTooLong,
    FrameTooShort,
    UndecodableFrame,
    UnknownFrameType,
)
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import (
    ConfigResponseMessage,
    EventMessage,
    Heartbeat,
    decode_guest_frame,
    encode_config_response,
)
from tests.conftest import read_vector


def _decode_all(data: bytes, chunks: list[int]) -> list[Frame]:
    decoder = FrameDecoder()
    frames: list[Frame] = []
    offset = 0
    for size in chunks:
        frames.extend(decoder.feed(data[offset : offset + size]))
        offset += size
    frames.extend(decoder.feed(data[offset:]))
    assert decoder.buffered_bytes == 0
    return frames


def test_vector_decodes_to_the_same_frames_under_any_chunking() -> None:
    data = read_vector("web-pod.bin")
    whole = FrameDecoder().feed(data)
    assert len(whole) == 18
    rng = random.Random(1)
    for _ in range(20):
        chunks = [rng.randint(1, 40) for _ in range(len(data) // 10)]
        assert _decode_all(data, chunks) == whole
    assert _decode_all(data, [1] * len(data)) == whole


def test_encode_then_decode_is_identity() -> None:
    frames = [Frame(1, b""), Frame(2, b"\x01" * 300), Frame(99, b"x")]
    wire = b"".join(encode_frame(f.type, f.payload) for f in frames)
    assert FrameDecoder().feed(wire) == frames


def test_length_below_header_is_a_framing_error() -> None:
    with pytest.raises(FrameTooShort):
        FrameDecoder().feed(HEADER.pack(1, 7))


def test_length_above_limit_is_a_framing_error_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=4096)
    with pytest.raises(FrameTooLong):
        decoder.feed(HEADER.pack(2, 100 * 1024 * 1024))


def test_heartbeat_is_an_eight_byte_frame() -> None:
    frames = FrameDecoder().feed(encode_frame(FrameType.HEARTBEAT))
    assert frames == [Frame(1, b"")]
    assert decode_guest_frame(frames[0]) == Heartbeat()


def test_unknown_type_and_undecodable_payload_are_payload_errors() -> None:
    with pytest.raises(UnknownFrameType):
        decode_guest_frame(Frame(9, b""))
    with pytest.raises(UndecodableFrame):
        decode_guest_frame(Frame(2, b"\xff\xff\xff"))
    with pytest.raises(UndecodableFrame):
        decode_guest_frame(Frame(4, b"\x0a\x05ab"))


def test_type_two_configuration_response_of_4_19_kernels() -> None:
    response = pb.ConfigurationResponse(
        error=pb.ConfigurationResponse.UNKNOWN,
        msg="bad",
        version=1,
        kernel_version=0x041370,
    )
    frame = Frame(FrameType.EVENT, response.SerializeToString())
    message = decode_guest_frame(frame)
    assert isinstance(message, ConfigResponseMessage)
    assert message.legacy_type
    assert message.response.error == pb.ConfigurationResponse.UNKNOWN
    assert message.response.msg == "bad"


def test_type_four_response_and_real_events_are_told_apart() -> None:
    response = pb.ConfigurationResponse(version=1, kernel_version=5)
    wire = encode_config_response(response)
    message = decode_guest_frame(FrameDecoder().feed(wire)[0])
    assert isinstance(message, ConfigResponseMessage) and not message.legacy_type
    event = pb.Event(timestamp=5, exit=pb.ExitEvent(process_uuid=b"\x01" * 16))
    decoded = decode_guest_frame(Frame(FrameType.EVENT, event.SerializeToString()))
    assert isinstance(decoded, EventMessage)
    assert decoded.event == event


def test_vector_holds_both_kinds_of_configuration_response() -> None:
    frames = FrameDecoder().feed(read_vector("web-pod.bin"))
    answers = [
        m
        for m in map(decode_guest_frame, frames)
        if isinstance(m, ConfigResponseMessage)
    ]
    assert sorted(m.legacy_type for m in answers) == [False, True]
