"""Property tests of the codec: chunking never changes the frames."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from csm_wire.codec import Frame, FrameDecoder, encode_frame

frames_strategy = st.lists(
    st.builds(
        Frame,
        type=st.integers(min_value=0, max_value=2**32 - 1),
        payload=st.binary(max_size=300),
    ),
    max_size=20,
)


@given(frames=frames_strategy, cuts=st.lists(st.integers(min_value=0), max_size=50))
def test_any_chunking_gives_the_same_frames(
    frames: list[Frame], cuts: list[int]
) -> None:
    wire = b"".join(encode_frame(f.type, f.payload) for f in frames)
    points = sorted({cut % (len(wire) + 1) for cut in cuts} | {0, len(wire)})
    decoder = FrameDecoder()
    decoded: list[Frame] = []
    for start, end in itertools.pairwise(points):
        decoded.extend(decoder.feed(wire[start:end]))
    assert decoded == frames
    assert decoder.buffered_bytes == 0


@given(frame_type=st.integers(min_value=0, max_value=2**32 - 1), payload=st.binary())
def test_encode_then_decode_is_the_identity(frame_type: int, payload: bytes) -> None:
    assert FrameDecoder(1 << 20).feed(encode_frame(frame_type, payload)) == [
        Frame(frame_type, payload)
    ]
