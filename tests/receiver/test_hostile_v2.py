"""Hostile v2 guests: a hello claiming another VM's boot, and sequence
numbers that collide with another VM's, touch nothing of that VM."""

import asyncio

from bench.v2_guest import V2TestGuest, sample_event, sample_uuid
from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.v2 import encode_hello, encode_sequenced_event
from tests.conftest import GuestConnection, RunningReceiver
from tests.receiver.helpers import vm_state, wait_for
from tests.receiver.test_lossless import stored_uuids

MACHINE = 0x5EED00A1


async def test_hello_claiming_another_vms_boot_is_kept_apart(
    receiver: RunningReceiver,
) -> None:
    honest = V2TestGuest(receiver.sockets["vm-a"], MACHINE)
    await honest.start()
    for n in range(1, 51):
        honest.produce(sample_event(MACHINE, n))
    await honest.wait_acked()

    # vm-b claims vm-a's boot and reuses its sequence numbers and UUIDs.
    impostor = V2TestGuest(receiver.sockets["vm-b"], MACHINE)
    await impostor.start()
    for n in range(1, 31):
        impostor.produce(sample_event(MACHINE, n))
    await impostor.wait_acked()
    await impostor.stop()

    # vm-a goes on: its next events are new, not duplicates of vm-b's.
    for n in range(51, 61):
        honest.produce(sample_event(MACHINE, n))
    await honest.wait_acked()
    await honest.stop()
    await receiver.settle()

    # Each event stored once, under the VM whose socket it came through.
    vm_a = await stored_uuids(receiver, "vm-a")
    vm_b = await stored_uuids(receiver, "vm-b")
    assert vm_a == [sample_uuid(MACHINE, n) for n in range(1, 61)]
    assert vm_b == [sample_uuid(MACHINE, n) for n in range(1, 31)]
    assert vm_state(receiver, "vm-a").delivery.duplicates == 0


async def test_hello_after_v1_traffic_is_just_an_unknown_frame(
    receiver: RunningReceiver,
) -> None:
    guest = await GuestConnection.open(receiver.sockets["vm-a"])
    await guest.send(
        encode_hello(v2pb.Hello(protocol_version=1, machine_id=0))  # bad hello
        + encode_sequenced_event(1, b"\xff\xff")
    )
    state = vm_state(receiver, "vm-a")
    await wait_for(lambda: state.counters.frames >= 1, "frames read")
    await asyncio.sleep(0.2)
    await guest.close()
    await wait_for(lambda: not state.sessions, "closed")
    # Nothing stored, the receiver still serves the VM.
    assert await stored_uuids(receiver, "vm-a") == []
    vm = await receiver.get("/api/v1/vms/vm-a")
    assert vm["name"] == "vm-a"
