"""Protocol v2 without sockets: the guest stream against a scripted host."""

import pytest

from csm_wire.codec import Frame, FrameDecoder, FrameType, encode_frame
from csm_wire.errors import UndecodableFrame
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import Heartbeat, encode_config_request
from csm_wire.v2 import (
    GenerationResponseMessage,
    HelloMessage,
    LossReportMessage,
    SequencedEventMessage,
    decode_v2_guest_frame,
    encode_ack,
    encode_config_request_v2,
    encode_hello,
)
from csm_wire.v2_guest import GuestStream, StreamState

MACHINE = 0x1234ABCD


def event(n: int) -> pb.Event:
    uuid = MACHINE.to_bytes(4, "little") + n.to_bytes(8, "little") + bytes(4)
    return pb.Event(
        timestamp=1_700_000_000_000_000_000 + n,
        clone=pb.CloneEvent(proc=pb.Process(uuid=uuid)),
    )


def host_hello(acked: int = 0) -> bytes:
    return encode_hello(v2pb.Hello(protocol_version=2, acked_seq=acked))


def decode_all(data: bytes) -> list[object]:
    return [decode_v2_guest_frame(f) for f in FrameDecoder().feed(data)]


def seqs(messages: list[object]) -> list[int]:
    return [m.seq for m in messages if isinstance(m, SequencedEventMessage)]


def connected(stream: GuestStream, acked: int = 0) -> list[object]:
    hello = decode_all(stream.connect(0.0))
    stream.receive(host_hello(acked))
    return hello


def test_hello_carries_boot_and_capabilities() -> None:
    stream = GuestStream(MACHINE, software_version="test 1", kernel_version=0x41300)
    (hello,) = decode_all(stream.connect(0.0))
    assert isinstance(hello, HelloMessage)
    assert hello.hello.machine_id == MACHINE
    assert hello.hello.protocol_version == 2
    assert "ack" in hello.hello.capabilities
    assert stream.data_to_send() == b""


def test_events_wait_for_the_host_hello_then_flow_in_order() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    stream.connect(0.0)
    for n in range(3):
        stream.produce(event(n))
    assert stream.data_to_send() == b""
    stream.receive(host_hello())
    assert stream.state is StreamState.V2
    assert seqs(decode_all(stream.data_to_send())) == [1, 2, 3]


def test_ack_releases_and_reconnect_replays_the_rest() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    connected(stream)
    for n in range(5):
        stream.produce(event(n))
    stream.data_to_send()
    stream.receive(encode_ack(MACHINE, 2))
    assert stream.buffered_events == 3
    stream.disconnected()

    connected(stream, acked=3)
    assert seqs(decode_all(stream.data_to_send())) == [4, 5]
    assert stream.counters.replayed == 2
    assert stream.counters.reconnects == 1


def test_ack_for_another_boot_is_ignored() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    connected(stream)
    stream.produce(event(1))
    stream.data_to_send()
    stream.receive(encode_ack(MACHINE + 1, 1))
    assert stream.buffered_events == 1


def test_full_buffer_reports_the_lost_range_in_sequence() -> None:
    stream = GuestStream(MACHINE, software_version="t", replay_capacity_events=3)
    for n in range(10):
        stream.produce(event(n))
    connected(stream)
    messages = decode_all(stream.data_to_send())
    assert seqs(messages) == [1, 2, 3]
    (loss,) = [m for m in messages if isinstance(m, LossReportMessage)]
    assert (loss.report.first_seq, loss.report.last_seq, loss.report.count) == (
        4,
        10,
        7,
    )
    assert loss.cause == "replay_buffer_full"
    assert loss.report.last_timestamp == event(9).timestamp
    assert stream.drops == {"replay_buffer_full": 7}


def test_losses_upstream_take_sequence_numbers_too() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    connected(stream)
    stream.produce(event(1))
    stream.note_lost(4)
    stream.produce(event(2))
    messages = decode_all(stream.data_to_send())
    assert seqs(messages) == [1, 6]
    (loss,) = [m for m in messages if isinstance(m, LossReportMessage)]
    assert (loss.report.first_seq, loss.report.last_seq) == (2, 5)
    assert loss.cause == "source_overflow"


def test_restarted_agent_moves_past_what_the_host_holds() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    stream.produce(event(1))
    connected(stream, acked=500)
    assert seqs(decode_all(stream.data_to_send())) == [501]
    assert stream.next_seq == 502


def test_a_v1_host_gets_plain_events() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    stream.connect(0.0)
    stream.produce(event(1))
    (config,) = stream.receive(encode_config_request(pb.ConfigurationRequest()))
    assert config.generation is None
    assert stream.state is StreamState.V1
    frames = FrameDecoder().feed(stream.data_to_send())
    assert [f.type for f in frames] == [FrameType.EVENT]
    assert stream.buffered_events == 0
    answer = stream.answer_config(config, pb.ConfigurationResponse())
    assert FrameDecoder().feed(answer)[0].type == FrameType.CONFIG_RESPONSE


def test_a_silent_host_gets_v1_after_the_hello_timeout() -> None:
    stream = GuestStream(MACHINE, software_version="t", hello_timeout_s=5)
    stream.connect(0.0)
    stream.tick(4.0)
    assert stream.state is StreamState.AWAITING_HELLO
    stream.tick(5.0)
    assert stream.state is StreamState.V1


def test_tick_sends_heartbeats_and_counters() -> None:
    stream = GuestStream(
        MACHINE, software_version="t", heartbeat_interval_s=5, counters_interval_s=10
    )
    connected(stream)
    stream.produce(event(1))
    messages = decode_all(stream.tick(10.0, queue_depth=7))
    assert isinstance(messages[0], Heartbeat)
    counters = messages[1].counters  # type: ignore[attr-defined]
    assert counters.events_produced == 1
    assert counters.replay_buffer_events == 1
    assert counters.queue_depth == 7


def test_config_generation_round_trip() -> None:
    stream = GuestStream(MACHINE, software_version="t")
    connected(stream)
    request = pb.ConfigurationRequest(
        execute_config=pb.ExecuteCollectorConfig(enabled=True)
    )
    (config,) = stream.receive(encode_config_request_v2(7, request))
    assert config.generation == 7
    assert config.request == request
    (answer,) = decode_all(stream.answer_config(config, pb.ConfigurationResponse()))
    assert isinstance(answer, GenerationResponseMessage)
    assert answer.generation == 7


@pytest.mark.parametrize(
    "frame",
    [
        Frame(FrameType.SEQUENCED_EVENT, v2pb.SequencedEvent().SerializeToString()),
        Frame(
            FrameType.SEQUENCED_EVENT,
            v2pb.SequencedEvent(seq=1, event=b"\x08\x01").SerializeToString(),
        ),
        Frame(
            FrameType.LOSS_REPORT,
            v2pb.LossReport(first_seq=5, last_seq=4, count=0).SerializeToString(),
        ),
        Frame(
            FrameType.LOSS_REPORT,
            v2pb.LossReport(first_seq=1, last_seq=4, count=9).SerializeToString(),
        ),
        Frame(
            FrameType.HELLO,
            v2pb.Hello(capabilities=["x"] * 100).SerializeToString(),
        ),
        Frame(FrameType.GUEST_COUNTERS, b"\xff\xff"),
    ],
)
def test_host_refuses_impossible_v2_frames(frame: Frame) -> None:
    with pytest.raises(UndecodableFrame):
        decode_v2_guest_frame(frame)


def test_v1_frames_still_decode_after_hello() -> None:
    assert isinstance(decode_v2_guest_frame(Frame(FrameType.HEARTBEAT, b"")), Heartbeat)
    assert decode_all(encode_frame(FrameType.EVENT, event(1).SerializeToString()))
