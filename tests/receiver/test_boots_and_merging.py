"""Boots are told apart by machine id; events of a process merge in any order."""

import itertools

import pytest

from tests.conftest import RunningReceiver
from tests.receiver.events import BASE_NS, clone, execute, exit_, heartbeat, make_uuid
from tests.receiver.helpers import stream_and_store


async def test_two_machine_ids_make_two_boots_and_pid_reuse_two_processes(
    receiver: RunningReceiver,
) -> None:
    first = make_uuid(0x11111111, BASE_NS, 300)
    second = make_uuid(0x22222222, BASE_NS + 10**12, 300)
    await stream_and_store(
        receiver, "vm-a", heartbeat() + execute(first, None, "/bin/a", ["a"], BASE_NS)
    )
    await stream_and_store(
        receiver,
        "vm-a",
        heartbeat() + execute(second, None, "/bin/b", ["b"], BASE_NS + 10**12),
    )
    vm = await receiver.get("/api/v1/vms/vm-a")
    assert sorted(b["boot"] for b in vm["boots"]) == ["11111111", "22222222"]
    processes = (await receiver.get("/api/v1/vms/vm-a/processes"))["items"]
    assert sorted((p["boot"], p["pid"], p["binary"]) for p in processes) == [
        ("11111111", 300, "/bin/a"),
        ("22222222", 300, "/bin/b"),
    ]
    only_second = await receiver.get("/api/v1/vms/vm-a/processes", boot="22222222")
    assert [p["binary"] for p in only_second["items"]] == ["/bin/b"]


MACHINE = 0x5EED0002
PARENT = make_uuid(MACHINE, BASE_NS, 10)
CHILD = make_uuid(MACHINE, BASE_NS + 5_000, 11)
PARENT_EXEC = execute(PARENT, None, "/bin/sh", ["sh"], BASE_NS + 1_000)
CHILD_CLONE = clone(CHILD, PARENT, BASE_NS + 5_000)
CHILD_EXEC_1 = execute(CHILD, PARENT, "/bin/env", ["env", "x"], BASE_NS + 6_000)
CHILD_EXEC_2 = execute(CHILD, PARENT, "/bin/ls", ["ls", "-l"], BASE_NS + 7_000)
CHILD_EXIT = exit_(CHILD, BASE_NS + 9_000)
FRAMES = [PARENT_EXEC, CHILD_CLONE, CHILD_EXEC_1, CHILD_EXEC_2, CHILD_EXIT]


@pytest.mark.parametrize(
    "order",
    [
        list(p)
        for p in itertools.islice(
            itertools.permutations(range(len(FRAMES))), 0, 120, 17
        )
    ],
)
async def test_any_arrival_order_gives_the_same_process(
    receiver: RunningReceiver, order: list[int]
) -> None:
    # Frames from different CPUs arrive in any order; some split across
    # batches by closing the connection in the middle.
    first, rest = order[:2], order[2:]
    await stream_and_store(receiver, "vm-a", b"".join(FRAMES[i] for i in first))
    await stream_and_store(receiver, "vm-a", b"".join(FRAMES[i] for i in rest))
    child = await receiver.get(f"/api/v1/vms/vm-a/processes/{CHILD.hex()}")
    assert child["binary"] == "/bin/ls"
    assert child["argv"] == ["ls", "-l"]
    assert child["parent_uuid"] == PARENT.hex()
    assert child["exited_at"] is not None
    assert [e["binary"] for e in child["execs"]] == ["/bin/env", "/bin/ls"]
    assert [a["uuid"] for a in child["ancestors"]] == [PARENT.hex()]
    parent = await receiver.get(f"/api/v1/vms/vm-a/processes/{PARENT.hex()}")
    assert [c["uuid"] for c in parent["children"]] == [CHILD.hex()]
    assert parent["exited_at"] is None


async def test_exit_status_is_kept_when_the_guest_sends_it(
    receiver: RunningReceiver,
) -> None:
    from csm_wire.gen import schema_pb2 as pb
    from csm_wire.messages import encode_event

    with_status = make_uuid(MACHINE, BASE_NS + 20_000, 40)
    without = make_uuid(MACHINE, BASE_NS + 30_000, 41)
    exit_with_status = encode_event(
        pb.Event(
            timestamp=BASE_NS + 25_000,
            exit=pb.ExitEvent(process_uuid=with_status, exit_status=3 << 8),
        )
    )
    await stream_and_store(
        receiver,
        "vm-a",
        execute(with_status, None, "/bin/false", ["false"], BASE_NS + 21_000)
        + exit_with_status
        + execute(without, None, "/bin/true", ["true"], BASE_NS + 31_000)
        + exit_(without, BASE_NS + 32_000),
    )
    first = await receiver.get(f"/api/v1/vms/vm-a/processes/{with_status.hex()}")
    second = await receiver.get(f"/api/v1/vms/vm-a/processes/{without.hex()}")
    assert first["exit_status"] == 768 and first["exited_at"] is not None
    assert second["exit_status"] is None and second["exited_at"] is not None
