"""Floods, churn and guest-sent requests: the receiver stays up, its memory
stays flat, and a good VM's data is complete."""

import gc
import tracemalloc
from pathlib import Path

from csm_wire.codec import FrameType
from csm_wire.gen import schema_pb2 as pb
from tests.conftest import (
    GuestConnection,
    RunningReceiver,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.events import BASE_NS, execute, heartbeat, make_uuid, raw_frame
from tests.receiver.helpers import stream_and_store, vm_state, wait_for
from tests.receiver.test_web_pod_vector import assert_web_pod_state

FLOOD_EVENTS = 20_000
ROUNDS = 5
# Growth allowed between the first and the last flood round: allocator
# noise, not a per-event leak (a leak of even 100 bytes an event would
# exceed it).
FLAT_MEMORY_SLACK_BYTES = 2 * 1024 * 1024


async def test_guest_sent_configuration_request_is_refused_and_counted(
    receiver: RunningReceiver,
) -> None:
    request = pb.ConfigurationRequest(
        execute_config=pb.ExecuteCollectorConfig(enabled=False)
    ).SerializeToString()
    await stream_and_store(
        receiver, "vm-a", heartbeat() + raw_frame(FrameType.CONFIG_REQUEST, request)
    )
    assert vm_state(receiver, "vm-a").counters.unknown_frame_types == 1


async def test_connection_churn_leaves_no_session_behind(
    receiver: RunningReceiver,
) -> None:
    state = vm_state(receiver, "vm-a")
    for _ in range(200):
        guest = await GuestConnection.open(receiver.sockets["vm-a"])
        await guest.send(heartbeat())
        await guest.close()
    await wait_for(lambda: state.counters.connections == 200, "all accepted")
    await wait_for(lambda: not state.sessions, "all sessions closed")
    await stream_and_store(receiver, "vm-b", read_vector("web-pod.bin"))
    await assert_web_pod_state(receiver, "vm-b")


def _flood(round_number: int) -> bytes:
    machine = 0x0F100D00 + round_number
    return heartbeat() + b"".join(
        execute(
            make_uuid(machine, BASE_NS + n, 1000 + n),
            None,
            "/usr/bin/flood",
            ["flood", str(n), "x" * 200],
            BASE_NS + n,
        )
        for n in range(FLOOD_EVENTS)
    )


async def test_flood_keeps_memory_flat_and_the_good_vm_complete(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        ["bad", "good"],
        ingest_queue_events=5000,
        # Each round is a new boot: allow the rounds.
        max_boots_per_vm=ROUNDS + 1,
    )
    running = await start_receiver(settings)
    bad = vm_state(running, "bad")
    # Python-level allocations only: SQLite's page caches fill up to their
    # fixed size and would hide or fake a trend in RSS.
    tracemalloc.start()
    try:
        samples = []
        for round_number in range(ROUNDS):
            guest = await GuestConnection.open(running.sockets["bad"])
            await guest.send(_flood(round_number))
            expected = (round_number + 1) * FLOOD_EVENTS
            await wait_for(
                lambda n=expected: bad.counters.events >= n, "flood read", 120
            )
            await guest.close()
            await wait_for(lambda: not bad.sessions, "flood connection closed")
            await running.settle(60)
            gc.collect()
            samples.append(tracemalloc.get_traced_memory()[0])
        await stream_and_store(running, "good", read_vector("web-pod.bin"))
        print(
            "receiver heap after each flood round (MiB):",
            [round(s / 2**20, 2) for s in samples],
            "drops:",
            dict(bad.counters.drops),
        )
        # The first round warms caches and pools; after it memory is flat.
        assert max(samples[1:]) - samples[1] < FLAT_MEMORY_SLACK_BYTES
        await assert_web_pod_state(running, "good")
    finally:
        tracemalloc.stop()
        await stop_receiver(running)
