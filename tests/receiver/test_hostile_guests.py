"""Hostile guests cost only themselves; a well-behaved VM beside them is
stored completely and untouched."""

import asyncio
import contextlib
from pathlib import Path

from sqlalchemy import select

from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_event
from receiver.store.models import containers, processes
from tests.conftest import (
    GuestConnection,
    RunningReceiver,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.events import BASE_NS, execute, heartbeat, make_uuid
from tests.receiver.helpers import stream_and_store, vm_state, wait_for
from tests.receiver.test_web_pod_vector import assert_web_pod_state

WEB_POD_SHELL = "0100ed5e808d2568a7fc7a1884030000"


async def test_slowloris_connections_are_capped_and_closed(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        ["bad", "good"],
        heartbeat_interval_s=0.2,
        idle_timeout_s=1.0,
        max_connections_per_vm=8,
    )
    running = await start_receiver(settings)
    try:
        bad = vm_state(running, "bad")
        guests = [await GuestConnection.open(running.sockets["bad"]) for _ in range(40)]
        await wait_for(
            lambda: len(bad.sessions) + bad.counters.refused_connections == 40,
            "all connections seen",
        )
        assert len(bad.sessions) == 8

        async def dribble() -> None:
            # A byte at a time, never completing a frame header.
            for guest in guests:
                for _ in range(3):
                    try:
                        await guest.send(b"\x02")
                    except (ConnectionError, BrokenPipeError):
                        break
                    await asyncio.sleep(0.3)

        dribbling = asyncio.create_task(dribble())
        await stream_and_store(running, "good", read_vector("web-pod.bin"))
        await wait_for(lambda: not bad.sessions, "idle connections closed", 15)
        await dribbling
        for guest in guests:
            await guest.close()
        assert bad.counters.refused_connections == 32
        assert bad.counters.idle_closed == 8
        await assert_web_pod_state(running, "good")
    finally:
        await stop_receiver(running)


async def test_another_vms_uuids_do_not_touch_its_processes(
    receiver: RunningReceiver,
) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    forged = bytes.fromhex(WEB_POD_SHELL)
    await stream_and_store(
        receiver,
        "vm-b",
        heartbeat() + execute(forged, None, "/evil", ["evil"], BASE_NS + 99),
    )
    await assert_web_pod_state(receiver, "vm-a")
    shell_a = await receiver.get(f"/api/v1/vms/vm-a/processes/{WEB_POD_SHELL}")
    shell_b = await receiver.get(f"/api/v1/vms/vm-b/processes/{WEB_POD_SHELL}")
    assert shell_a["binary"] == "/bin/sh"
    assert shell_b["binary"] == "/evil"


async def test_cyclic_and_deep_parent_links_are_served_bounded(
    receiver: RunningReceiver,
) -> None:
    machine = 0x0BAD0001
    first = make_uuid(machine, BASE_NS, 2)
    second = make_uuid(machine, BASE_NS + 1, 3)
    chain = [make_uuid(machine, BASE_NS + 10 + n, 100 + n) for n in range(600)]
    frames = [
        execute(first, second, "/cycle/a", ["a"], BASE_NS),
        execute(second, first, "/cycle/b", ["b"], BASE_NS + 1),
    ]
    frames += [
        execute(uuid, chain[n - 1] if n else None, "/deep", ["d"], BASE_NS + 10 + n)
        for n, uuid in enumerate(chain)
    ]
    await stream_and_store(receiver, "vm-a", b"".join(frames))
    cycle = await receiver.get(f"/api/v1/vms/vm-a/processes/{first.hex()}")
    assert [a["binary"] for a in cycle["ancestors"]] == ["/cycle/b", "/cycle/a"]
    deepest = await receiver.get(f"/api/v1/vms/vm-a/processes/{chain[-1].hex()}")
    assert len(deepest["ancestors"]) == 256
    tree = await receiver.get("/api/v1/vms/vm-a/tree")
    assert len(tree["items"]) == 602
    assert tree["roots"] == [chain[0].hex()]


async def test_container_and_exec_session_floods_are_capped(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        ["bad", "good"],
        max_containers_per_boot=10,
        max_exec_sessions_per_boot=5,
    )
    running = await start_receiver(settings)
    try:
        machine = 0x0BAD0002
        frames = [
            execute(
                make_uuid(machine, BASE_NS + n, 1000 + n),
                None,
                "/x",
                ["x"],
                BASE_NS + n,
                container_id=n + 1,
            )
            for n in range(50)
        ]
        frames += [
            execute(
                make_uuid(machine, BASE_NS + 100 + n, 2000 + n),
                None,
                "/y",
                ["y"],
                BASE_NS + 100 + n,
                container_id=1,
                exec_session_id=n + 1,
            )
            for n in range(20)
        ]
        good = asyncio.create_task(
            stream_and_store(running, "good", read_vector("web-pod.bin"))
        )
        await stream_and_store(running, "bad", b"".join(frames))
        await good
        counters = vm_state(running, "bad").counters
        assert counters.drops["container_limit"] == 40
        assert counters.drops["exec_session_limit"] == 15
        listed = await running.get("/api/v1/vms/bad/containers", limit=1000)
        assert len(listed["items"]) == 10
        await assert_web_pod_state(running, "good")
    finally:
        await stop_receiver(running)


async def test_non_utf8_is_escaped_in_the_api_and_stored_exactly(
    receiver: RunningReceiver,
) -> None:
    machine = 0x0BAD0003
    uuid = make_uuid(machine, BASE_NS, 42)
    process = pb.Process(
        creation_timestamp=BASE_NS,
        uuid=uuid,
        pid=42,
        binary=pb.File(fullpath=b"/bin/\xff\xfeevil"),
        args=pb.ProcessArguments(
            argv=[b"\xc3\x28", b"ok"], envp=[b"K=\x80\x81", b"PATH=/bin"]
        ),
        container_id=3,
    )
    container = pb.Container(
        container_id=3, pod_name=b"pod-\xff", container_name=b"\xe2\x82", init_uuid=uuid
    )
    stream = heartbeat()
    stream += encode_event(
        pb.Event(timestamp=BASE_NS, execute=pb.ExecuteEvent(proc=process))
    )
    stream += encode_event(
        pb.Event(
            timestamp=BASE_NS, container=pb.ContainerInfoEvent(container=container)
        )
    )
    await stream_and_store(receiver, "vm-a", stream)
    shown = await receiver.get(f"/api/v1/vms/vm-a/processes/{uuid.hex()}")
    assert shown["binary"] == "/bin/\\xff\\xfeevil"
    assert shown["argv"] == ["\\xc3(", "ok"]
    assert shown["envp"] == ["K=\\x80\\x81", "PATH=/bin"]
    listed = await receiver.get("/api/v1/vms/vm-a/containers")
    assert listed["items"][0]["pod_name"] == "pod-\\xff"
    async with receiver.service.engine.connect() as connection:
        binary = (await connection.execute(select(processes.c.binary))).scalar_one()
        pod = (await connection.execute(select(containers.c.pod_name))).scalar_one()
    assert binary == b"/bin/\xff\xfeevil"
    assert pod == b"pod-\xff"


async def test_argv_and_env_at_the_frame_limit(receiver: RunningReceiver) -> None:
    machine = 0x0BAD0004
    limit = receiver.service.settings.max_frame_bytes
    big = make_uuid(machine, BASE_NS, 50)
    too_big = make_uuid(machine, BASE_NS + 1, 51)
    # 1000 arguments of 1000 bytes and 2000 variables: just under the limit.
    argv = ["a" * 1000 for _ in range(1000)]
    envp = [f"V{n}=x" for n in range(2000)]
    process = pb.Process(
        uuid=big,
        pid=50,
        creation_timestamp=BASE_NS + 2,
        binary=pb.File(fullpath=b"/bin/big"),
        args=pb.ProcessArguments(
            argv=[a.encode() for a in argv], envp=[e.encode() for e in envp]
        ),
    )
    fits = encode_event(
        pb.Event(timestamp=BASE_NS + 2, execute=pb.ExecuteEvent(proc=process))
    )
    assert len(fits) < limit
    over = execute(too_big, None, "/bin/over", ["b" * limit], BASE_NS + 3)
    await stream_and_store(receiver, "vm-a", heartbeat() + fits)
    shown = await receiver.get(f"/api/v1/vms/vm-a/processes/{big.hex()}")
    assert len(shown["argv"]) == 1000 and len(shown["envp"]) == 2000

    guest = await GuestConnection.open(receiver.sockets["vm-a"])
    # The host hangs up after the header, while the body is still going out.
    with contextlib.suppress(ConnectionError):
        await guest.send(heartbeat() + over)
    state = vm_state(receiver, "vm-a")
    await wait_for(lambda: state.counters.framing_errors == 1, "oversized frame")
    await guest.close()
    await stream_and_store(receiver, "vm-b", read_vector("web-pod.bin"))
    await assert_web_pod_state(receiver, "vm-b")
