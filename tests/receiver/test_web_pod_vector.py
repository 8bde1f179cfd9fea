"""The recorded web-pod guest stream becomes the expected stored state."""

import json

import pytest

from tests.conftest import VECTORS, RunningReceiver, read_vector
from tests.receiver.fleet.polling import poll_until
from tests.receiver.helpers import all_items, random_chunks, stream_and_store

EXPECTED = json.loads((VECTORS / "web-pod.expected.json").read_text())


def _expected_process(expected: dict) -> dict:
    return {
        "uuid": expected["uuid"],
        "pid": expected["pid"],
        "parent_uuid": expected.get("parent_uuid"),
        "binary": expected["binary"],
        "container_id": expected["container_id"],
        "exec_session_id": expected["exec_session_id"],
        "exited": expected.get("exited", False),
        **({"argv": expected["argv"]} if "argv" in expected else {}),
    }


def _actual_process(actual: dict, with_argv: bool) -> dict:
    shown = {
        "uuid": actual["uuid"],
        "pid": actual["pid"],
        "parent_uuid": actual["parent_uuid"],
        "binary": actual["binary"],
        "container_id": actual["container_id"],
        "exec_session_id": actual["exec_session_id"],
        "exited": actual["exited_at"] is not None,
    }
    if with_argv:
        shown["argv"] = actual["argv"]
    return shown


async def assert_web_pod_state(running: RunningReceiver, vm: str) -> None:
    """Processes, containers and exec sessions match the expected file."""
    processes = await all_items(running, f"/api/v1/vms/{vm}/processes", limit=3)
    by_uuid = {p["uuid"]: p for p in processes}
    assert sorted(by_uuid) == sorted(p["uuid"] for p in EXPECTED["processes"])
    for expected in EXPECTED["processes"]:
        actual = by_uuid[expected["uuid"]]
        assert _actual_process(actual, "argv" in expected) == _expected_process(
            expected
        )

    containers = await running.get(f"/api/v1/vms/{vm}/containers")
    shown = [
        {key: c[key] for key in EXPECTED["containers"][0]} for c in containers["items"]
    ]
    assert shown == EXPECTED["containers"]

    sessions = await running.get(f"/api/v1/vms/{vm}/exec-sessions")
    grouped = {str(s["exec_session_id"]): s["processes"] for s in sessions["items"]}
    assert {k: sorted(v) for k, v in grouped.items()} == {
        k: sorted(v) for k, v in EXPECTED["exec_sessions"].items()
    }
    assert all(s["container_id"] == 2 for s in sessions["items"])

    vms = await running.get("/api/v1/vms")
    vm_entry = next(v for v in vms["items"] if v["name"] == vm)
    assert len(vm_entry["boots"]) == EXPECTED["vm_boots"]


@pytest.mark.parametrize("chunking", ["one-write", "random-small-chunks"])
async def test_web_pod_vector_yields_expected_state(
    receiver: RunningReceiver, chunking: str
) -> None:
    data = read_vector("web-pod.bin")
    chunks = random_chunks(len(data), seed=7) if chunking != "one-write" else None
    await stream_and_store(receiver, "vm-a", data, chunks)
    await assert_web_pod_state(receiver, "vm-a")


async def test_byte_at_a_time_stream_is_stored_identically(
    receiver: RunningReceiver,
) -> None:
    data = read_vector("web-pod.bin")
    await stream_and_store(receiver, "vm-a", data, [1] * len(data))
    await assert_web_pod_state(receiver, "vm-a")


async def test_process_detail_shows_ancestors_children_and_layer(
    receiver: RunningReceiver,
) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    kit = await receiver.get(
        "/api/v1/vms/vm-a/processes/0100ed5e001b8168a7fc7a1886030000"
    )
    assert kit["binary_layer"] == "added"
    assert kit["binary_written_by"] == "0100ed5e00124468a7fc7a1885030000"
    assert [a["pid"] for a in kit["ancestors"]] == [900, 412, 1]
    assert kit["execs"][0]["argv"] == ["/tmp/kit", "--quiet"]
    assert [m["path"] for m in kit["memexecs"]] == ["/tmp/.cache/libhook.so"]
    assert kit["memexecs"][0]["layer"] == "added"

    shell = await receiver.get(
        "/api/v1/vms/vm-a/processes/0100ed5e808d2568a7fc7a1884030000"
    )
    assert sorted(c["pid"] for c in shell["children"]) == [901, 902]

    bash = await receiver.get(
        "/api/v1/vms/vm-a/processes/0100ed5ec0e1ae68a7fc7a18b6030000"
    )
    assert bash["stdin"]["kind"] == "socket"
    assert bash["stdin"]["remote"]["ip"]


async def test_configuration_answers_are_recorded(receiver: RunningReceiver) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    # The answer is recorded by a write of its own, beside ingest.
    vm = await poll_until(
        lambda: receiver.get("/api/v1/vms/vm-a"),
        lambda vm: vm["config_response"] is not None,
    )
    assert vm["config_response"]["error"] == "NO_ERROR"
    # The stream carries a type-4 answer and the 4.19 kernels' type-2 one.
    assert vm["counters"]["config_responses"] == 2
    assert vm["counters"]["decode_errors"] == 0
