"""Protocol v2 end to end on a running receiver: acks, replay, duplicates,
loss reports, gaps, generations, fairness, and v1 left undisturbed."""

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from bench.v2_guest import V2TestGuest, sample_event, sample_uuid
from csm_wire.codec import FrameDecoder, FrameType
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_heartbeat
from csm_wire.v2 import encode_hello, encode_sequenced_event
from receiver.store.models import events
from tests.conftest import (
    GuestConnection,
    RunningReceiver,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.helpers import stream_and_store, vm_state, wait_for
from tests.receiver.test_web_pod_vector import assert_web_pod_state

MACHINE_A = 0x0A0A0A0A
MACHINE_B = 0x0B0B0B0B


async def stored_uuids(running: RunningReceiver, vm: str) -> list[bytes]:
    """The UUIDs of a VM's stored events, in the order they were stored."""
    vm_id = vm_state(running, vm).vm_id
    async with running.service.engine.connect() as connection:
        rows = await connection.execute(
            select(events.c.uuid).where(events.c.vm_id == vm_id).order_by(events.c.id)
        )
        return [row.uuid for row in rows]


async def test_v2_events_are_acked_and_stored_once_across_reconnects(
    receiver: RunningReceiver,
) -> None:
    guest = V2TestGuest(receiver.sockets["vm-a"], MACHINE_A)
    await guest.start()
    for n in range(1, 301):
        guest.produce(sample_event(MACHINE_A, n))
        if n % 100 == 0:
            # Drop the connection with events in flight: they are replayed.
            guest.drop_connection()
            await asyncio.sleep(0.1)
    await guest.wait_acked()
    await guest.stop()
    await receiver.settle()

    uuids = await stored_uuids(receiver, "vm-a")
    assert sorted(uuids) == sorted(sample_uuid(MACHINE_A, n) for n in range(1, 301))
    assert guest.connections >= 3
    body = await receiver.get("/api/v1/vms/vm-a")
    assert body["protocol"] == "v2"
    assert body["delivery"]["sequences"][f"{MACHINE_A:08x}"]["acked"] == 300
    assert body["delivery"]["gap_summary"] == []


async def test_replayed_duplicates_are_dropped(receiver: RunningReceiver) -> None:
    first = V2TestGuest(receiver.sockets["vm-a"], MACHINE_A)
    await first.start()
    for n in range(1, 51):
        first.produce(sample_event(MACHINE_A, n))
    await first.wait_acked()
    await first.stop()

    # A guest that ignores the host's hello sends all of it again, and one more.
    raw = await GuestConnection.open(receiver.sockets["vm-a"])
    frames = [encode_hello(v2pb.Hello(protocol_version=2, machine_id=MACHINE_A))]
    frames += [
        encode_sequenced_event(n, sample_event(MACHINE_A, n).SerializeToString())
        for n in range(1, 52)
    ]
    await raw.send(b"".join(frames))
    decoder = FrameDecoder()
    acked = 0
    while acked < 51:
        for frame in decoder.feed(await asyncio.wait_for(raw.reader.read(65536), 10)):
            if frame.type == FrameType.ACK:
                acked = v2pb.Ack.FromString(frame.payload).seq
    await raw.close()
    await receiver.settle()

    assert len(await stored_uuids(receiver, "vm-a")) == 51
    assert vm_state(receiver, "vm-a").delivery.duplicates == 50


async def test_replay_buffer_overflow_shows_as_a_gap(receiver: RunningReceiver) -> None:
    guest = V2TestGuest(receiver.sockets["vm-a"], MACHINE_A, replay_capacity_events=10)
    # The host is unreachable while 50 events happen: 40 do not fit.
    for n in range(1, 51):
        guest.produce(sample_event(MACHINE_A, n))
    await guest.start()
    await guest.wait_acked()
    await guest.stop()
    await receiver.settle()

    assert len(await stored_uuids(receiver, "vm-a")) == 10
    gaps = await receiver.get("/api/v1/vms/vm-a/gaps")
    (gap,) = gaps["items"]
    assert gap["cause"] == "guest_overflow"
    assert (gap["first_seq"], gap["last_seq"], gap["count"]) == (11, 50, 40)
    assert gap["boot"] == f"{MACHINE_A:08x}"
    assert gap["details"] == {"guest_cause": "replay_buffer_full"}
    body = await receiver.get("/api/v1/vms/vm-a")
    assert body["delivery"]["gap_summary"] == [
        {
            "boot": f"{MACHINE_A:08x}",
            "cause": "guest_overflow",
            "gaps": 1,
            "events": 40,
            "unknown_size": 0,
        }
    ]
    async with receiver.http.get(receiver.api_url + "/metrics") as response:
        text = await response.text()
    assert 'csm_vm_gap_events_total{cause="guest_overflow",vm="vm-a"} 40.0' in text


async def test_counters_and_config_generations(receiver: RunningReceiver) -> None:
    guest = V2TestGuest(receiver.sockets["vm-a"], MACHINE_A)
    await guest.start()
    await asyncio.wait_for(guest.connected.wait(), 10)
    await wait_for(lambda: len(guest.configs) == 1, "initial config")
    (session,) = vm_state(receiver, "vm-a").sessions
    request = pb.ConfigurationRequest(
        execute_config=pb.ExecuteCollectorConfig(enabled=True, argv_limit=64)
    )
    answer = await asyncio.wait_for(session.push_config(request, generation=41), 10)
    assert answer["generation"] == 41
    assert guest.configs[-1] == request

    guest.stream.produce(sample_event(MACHINE_A, 1))
    guest._wake.set()
    await guest.wait_acked()
    assert guest._writer is not None
    guest._writer.write(guest.stream.counters_frame(queue_depth=3))
    state = vm_state(receiver, "vm-a")
    await wait_for(lambda: state.delivery.guest_counters is not None, "counters")
    assert state.delivery.guest_counters is not None
    assert state.delivery.guest_counters["queue_depth"] == "3"
    await guest.stop()


async def test_a_v1_guest_only_ever_gets_type_3(receiver: RunningReceiver) -> None:
    guest = await GuestConnection.open(receiver.sockets["vm-a"])
    # A hello that is not the first frame does not make the connection v2.
    hello = encode_hello(v2pb.Hello(protocol_version=2, machine_id=MACHINE_A))
    await guest.send(encode_heartbeat() + hello + encode_heartbeat())
    state = vm_state(receiver, "vm-a")
    await wait_for(lambda: state.counters.heartbeats == 2, "heartbeats")
    data = await asyncio.wait_for(guest.reader.read(65536), 5)
    await guest.close()
    frames = FrameDecoder().feed(data)
    assert frames
    assert {frame.type for frame in frames} == {FrameType.CONFIG_REQUEST}
    assert state.protocol == "v1"
    assert state.counters.unknown_frame_types == 1


async def test_v1_vector_beside_a_v2_guest(receiver: RunningReceiver) -> None:
    guest = V2TestGuest(receiver.sockets["vm-b"], MACHINE_B)
    await guest.start()
    for n in range(1, 101):
        guest.produce(sample_event(MACHINE_B, n))
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    await guest.wait_acked()
    await guest.stop()
    await receiver.settle()
    await assert_web_pod_state(receiver, "vm-a")
    assert len(await stored_uuids(receiver, "vm-b")) == 100


async def test_v1_reconnect_is_an_inferred_gap(receiver: RunningReceiver) -> None:
    vector = read_vector("web-pod.bin")
    await stream_and_store(receiver, "vm-a", vector)
    await stream_and_store(receiver, "vm-a", vector)
    await receiver.settle()
    await wait_for(lambda: not receiver.service.ingestor.gaps, "gaps stored")
    await receiver.settle()
    gaps = await receiver.get("/api/v1/vms/vm-a/gaps", cause="v1_reconnect")
    (gap,) = gaps["items"]
    assert gap["count"] is None
    assert gap["started_at"] <= gap["ended_at"]


async def test_a_flooding_vm_does_not_hold_back_a_quiet_one(
    db_url: str, tmp_path: Path
) -> None:
    # Small memory bounds, so the flood is paused rather than queued.
    settings = make_settings(
        tmp_path,
        db_url,
        ["flood", "quiet"],
        ingest_vm_max_bytes=256 << 10,
        ingest_total_max_bytes=1 << 20,
        batch_max_events=500,
    )
    running = await start_receiver(settings)
    try:
        flood = V2TestGuest(running.sockets["flood"], MACHINE_A)
        quiet = V2TestGuest(running.sockets["quiet"], MACHINE_B)
        await flood.start()
        await quiet.start()

        async def flood_forever() -> None:
            n = 0
            while True:
                while flood.stream.buffered_events > 5000:
                    await asyncio.sleep(0.001)
                for _ in range(500):
                    n += 1
                    flood.produce(sample_event(MACHINE_A, n))
                await asyncio.sleep(0)

        flooding = asyncio.create_task(flood_forever())
        for n in range(1, 201):
            quiet.produce(sample_event(MACHINE_B, n))
            await asyncio.sleep(0.01)
        await quiet.wait_acked()
        flooding.cancel()
        await asyncio.gather(flooding, return_exceptions=True)
        await running.settle(timeout_s=60)

        expected = [sample_uuid(MACHINE_B, n) for n in range(1, 201)]
        assert await stored_uuids(running, "quiet") == expected
        assert vm_state(running, "flood").delivery.pauses > 0
        assert vm_state(running, "quiet").delivery.pauses == 0
        await flood.stop()
        await quiet.stop()
    finally:
        await stop_receiver(running)


async def test_journal_empties_once_stored(receiver: RunningReceiver) -> None:
    guest = V2TestGuest(receiver.sockets["vm-a"], MACHINE_A)
    await guest.start()
    for n in range(1, 101):
        guest.produce(sample_event(MACHINE_A, n))
    await guest.wait_acked()
    await guest.stop()
    await receiver.settle()
    journal = receiver.service.journal
    await wait_for(lambda: journal.size_bytes == 0, "journal emptied")
    async with receiver.service.engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(events))
    assert count == 100
