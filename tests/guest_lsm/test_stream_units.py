"""The agent's side of v2 without a kernel: what goes into the stream, and how
losses the source counts become loss reports with sequence numbers."""

from csm_wire.codec import FrameDecoder, FrameType
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.v2 import encode_hello
from csm_wire.v2_guest import StreamState
from guest_lsm.agent import Agent
from guest_lsm.config import CollectorConfig, Protocol, Settings
from guest_lsm.enrich.identity import Identity
from guest_lsm.raw import RawExit, SourceCounters
from guest_lsm.service import SourceLosses

MACHINE_ID = 0x1234ABCD


def _agent(protocol: Protocol = Protocol.AUTO, replay_events: int = 16) -> Agent:
    settings = Settings(protocol=protocol, replay_events=replay_events)
    identity = Identity(MACHINE_ID, 1_000_000_000, 0)
    return Agent(settings, identity, CollectorConfig.all_on())


def _sent_frames(agent: Agent) -> list[tuple[int, bytes]]:
    stream = agent.stream
    assert stream is not None
    stream.connect(0.0)
    stream.receive(encode_hello(v2pb.Hello(protocol_version=2, acked_seq=0)))
    assert stream.state is StreamState.V2
    return [
        (frame.type, frame.payload)
        for frame in FrameDecoder().feed(stream.data_to_send())
    ]


def test_v2_exit_carries_the_wait_status() -> None:
    agent = _agent()
    agent.handle(RawExit(boot_ns=5, tgid=42, start_ns=7, exit_code=3 << 8))
    ((kind, payload),) = _sent_frames(agent)
    assert kind == FrameType.SEQUENCED_EVENT
    sequenced = v2pb.SequencedEvent.FromString(payload)
    assert sequenced.seq == 1
    event = pb.Event.FromString(sequenced.event)
    assert event.exit.exit_status == 3 << 8


def test_v1_exit_carries_the_uuid_only() -> None:
    agent = _agent(Protocol.V1)
    agent.outbox.accepting = True
    agent.handle(RawExit(boot_ns=5, tgid=42, start_ns=7, exit_code=3 << 8))
    (frame,) = FrameDecoder().feed(b"".join(agent.outbox.take_all()))
    event = pb.Event.FromString(frame.payload)
    assert event.exit.process_uuid
    assert not event.exit.HasField("exit_status")


def test_source_losses_become_loss_reports_between_events() -> None:
    agent = _agent()
    losses = SourceLosses(agent)
    agent.handle(RawExit(boot_ns=5, tgid=42, start_ns=7))
    losses.check(SourceCounters(ring_full=4, undecodable=1))
    losses.check(SourceCounters(ring_full=4, undecodable=1))
    agent.handle(RawExit(boot_ns=6, tgid=43, start_ns=8))
    frames = _sent_frames(agent)
    kinds = [kind for kind, _ in frames]
    assert kinds == [
        FrameType.SEQUENCED_EVENT,
        FrameType.LOSS_REPORT,
        FrameType.LOSS_REPORT,
        FrameType.SEQUENCED_EVENT,
    ]
    overflow = v2pb.LossReport.FromString(frames[1][1])
    unusable = v2pb.LossReport.FromString(frames[2][1])
    assert (overflow.first_seq, overflow.last_seq, overflow.count) == (2, 5, 4)
    assert overflow.cause == v2pb.LossReport.SOURCE_OVERFLOW
    assert (unusable.first_seq, unusable.count) == (6, 1)
    assert unusable.cause == v2pb.LossReport.ENCODING_FAILED
    assert v2pb.SequencedEvent.FromString(frames[3][1]).seq == 7


def test_a_full_replay_buffer_numbers_and_reports_what_it_drops() -> None:
    agent = _agent(replay_events=2)
    for tgid in range(5):
        agent.handle(RawExit(boot_ns=5, tgid=100 + tgid, start_ns=7))
    assert agent.stream is not None
    assert agent.stream.drops["replay_buffer_full"] == 3
    frames = _sent_frames(agent)
    (report,) = [
        v2pb.LossReport.FromString(p) for k, p in frames if k == FrameType.LOSS_REPORT
    ]
    assert (report.first_seq, report.last_seq) == (3, 5)
    assert report.cause == v2pb.LossReport.REPLAY_BUFFER_FULL
