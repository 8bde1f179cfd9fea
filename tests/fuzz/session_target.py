"""Fuzz target: arbitrary guest bytes through the decoder and a session.

Run by tests/fuzz/test_fuzz.py for a bounded number of inputs, and for
longer by ``python bench/fuzz_session.py``. Any exception other than the
session's own handling is a bug: the session must absorb every input.
"""

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from csm_wire.codec import FrameDecoder
    from csm_wire.errors import WireError
    from csm_wire.messages import decode_guest_frame
    from receiver.ingest.pipeline import IngestQueue
    from receiver.ingest.records import RecordError, record_event
    from receiver.sessions.session import GuestSession
    from receiver.sessions.vm import VmState
    from receiver.settings import VmSpec

QUEUE_CAPACITY = 64
MAX_FRAME_BYTES = 1 << 16


def _check_decoder(data: bytes) -> None:
    decoder = FrameDecoder(MAX_FRAME_BYTES)
    try:
        frames = decoder.feed(data)
    except WireError:
        return
    for frame in frames:
        try:
            message = decode_guest_frame(frame)
        except WireError:
            continue
        event = getattr(message, "event", None)
        if event is not None:
            with contextlib.suppress(RecordError):
                record_event(1, event, 0)


def _check_session(data: bytes) -> None:
    vm = VmState(1, VmSpec("fuzz", "hybrid", uds_path="/nonexistent"))
    written: list[bytes] = []
    session = GuestSession(
        vm,
        IngestQueue(QUEUE_CAPACITY),
        max_frame_bytes=MAX_FRAME_BYTES,
        write=written.append,
        close=lambda: None,
    )
    session.open(None)
    middle = len(data) // 2
    session.feed(data[:middle])
    session.feed(data[middle:])
    session.closed_by_peer()
    assert not vm.sessions


def test_one_input(data: bytes) -> None:
    """One fuzz input: must never raise."""
    _check_decoder(data)
    _check_session(data)


def main() -> None:
    """Run libFuzzer over the target with the command line's options."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
