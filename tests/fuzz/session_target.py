"""Fuzz target: arbitrary guest bytes through the decoder and a session.

Run by tests/fuzz/test_fuzz.py for a bounded number of inputs, and for
longer by ``python bench/fuzz_session.py``. Any exception other than the
session's own handling is a bug: the session must absorb every input.
"""

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from csm_wire.codec import FrameDecoder
    from csm_wire.errors import WireError
    from csm_wire.gen import csm_v2_pb2 as v2pb
    from csm_wire.messages import decode_guest_frame
    from csm_wire.v2 import encode_hello
    from receiver.ingest.journal import Journal
    from receiver.ingest.pipeline import Ingestor, IngestQueue
    from receiver.ingest.records import RecordError, record_event
    from receiver.sessions.delivery import Delivery
    from receiver.sessions.session import GuestSession
    from receiver.sessions.vm import VmState
    from receiver.settings import VmSpec

QUEUE_CAPACITY = 64
MAX_FRAME_BYTES = 1 << 16
# A small journal, shared by every input: filling it exercises the overflow
# path too, and its files go away with the process's temporary directory.
JOURNAL_DIR = tempfile.TemporaryDirectory(prefix="csm-fuzz-journal-")
JOURNAL = Journal(
    Path(JOURNAL_DIR.name), max_bytes=1 << 22, segment_bytes=1 << 20, fsync=False
)
JOURNAL.open()
HELLO = encode_hello(v2pb.Hello(protocol_version=2, machine_id=0x5EED0001))


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


def _check_session(data: bytes, *, v2: bool) -> None:
    vm = VmState(1, VmSpec("fuzz", "hybrid", uds_path="/nonexistent"))
    written: list[bytes] = []
    queue = IngestQueue(QUEUE_CAPACITY)
    delivery = None
    if v2:
        ingestor = Ingestor(
            None,  # nothing is written to a store here
            queue,
            batch_max_events=QUEUE_CAPACITY,
            batch_interval_s=1.0,
            journal=JOURNAL,
        )
        delivery = Delivery(JOURNAL, queue, ingestor)
        data = HELLO + data
    session = GuestSession(
        vm,
        queue,
        max_frame_bytes=MAX_FRAME_BYTES,
        write=written.append,
        close=lambda: None,
        delivery=delivery,
        pause=lambda: None,
        resume=lambda: None,
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
    _check_session(data, v2=False)
    _check_session(data, v2=True)


def main() -> None:
    """Run libFuzzer over the target with the command line's options."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
