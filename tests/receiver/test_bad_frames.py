"""Malformed guest input costs the sender only: counters, a log line, and
another VM's stream in the same run is stored completely."""

import asyncio
import logging

import pytest

from csm_wire.codec import HEADER
from tests.conftest import GuestConnection, RunningReceiver, read_vector
from tests.receiver.events import BASE_NS, execute, heartbeat, make_uuid, raw_frame
from tests.receiver.helpers import vm_state, wait_for
from tests.receiver.test_web_pod_vector import assert_web_pod_state

GOOD_AFTER = execute(
    make_uuid(0xABCD0001, BASE_NS, 77), None, "/bin/ok", ["ok"], BASE_NS
)

CASES = {
    # name: (bytes sent, connection must be closed by the host, counter)
    "length-below-header": (HEADER.pack(2, 3), True, "framing_errors"),
    "length-zero": (HEADER.pack(1, 0), True, "framing_errors"),
    "claims-100-MiB": (
        HEADER.pack(2, 100 * 1024 * 1024) + b"x" * 64,
        True,
        "framing_errors",
    ),
    "undecodable-payload": (
        raw_frame(2, b"\xff\xff\xff\xff") + GOOD_AFTER,
        False,
        "decode_errors",
    ),
    "unknown-type": (
        raw_frame(42, b"hello") + GOOD_AFTER,
        False,
        "unknown_frame_types",
    ),
    "truncated-frame": (HEADER.pack(2, 200) + b"\x00" * 50, False, "truncated_frames"),
}


async def _good_vm_streams(running: RunningReceiver) -> None:
    guest = await GuestConnection.open(running.sockets["vm-b"])
    data = read_vector("web-pod.bin")
    for offset in range(0, len(data), 97):
        await guest.send(data[offset : offset + 97])
        await asyncio.sleep(0.001)
    await guest.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_is_counted_logged_and_isolated(
    receiver: RunningReceiver, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    data, host_closes, counter = CASES[case]
    bad = vm_state(receiver, "vm-a")
    good = vm_state(receiver, "vm-b")
    caplog.set_level(logging.WARNING)

    guest = await GuestConnection.open(receiver.sockets["vm-a"])
    await guest.send(heartbeat())
    good_task = asyncio.create_task(_good_vm_streams(receiver))
    await guest.send(data)
    if host_closes:
        await wait_for(lambda: not bad.sessions, "host closed the bad connection")
        assert await guest.reader.read() != b"x"  # EOF from the host side
        await guest.close()
    elif case == "truncated-frame":
        await guest.close()
        await wait_for(lambda: not bad.sessions, "guest left")
    else:
        await wait_for(lambda: bad.counters.events >= 1, "good event after the bad one")
        assert bad.sessions, "the connection must stay up"
        await guest.close()
    await good_task
    await wait_for(lambda: not good.sessions and not bad.sessions, "both done")
    await receiver.settle()

    assert getattr(bad.counters, counter) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len([r for r in warnings if "vm-a" in r.getMessage()]) == 1
    assert not [r for r in warnings if "vm-b" in r.getMessage()]
    await assert_web_pod_state(receiver, "vm-b")
    good_counters = good.counters
    assert good_counters.decode_errors == good_counters.framing_errors == 0
    if not host_closes and case != "truncated-frame":
        stored = await receiver.get("/api/v1/vms/vm-a/processes")
        assert [p["binary"] for p in stored["items"]] == ["/bin/ok"]
    vm = await receiver.get("/api/v1/vms/vm-a")
    assert vm["counters"][counter] == 1
