"""Time travel in the tree, and the raw events list with its cursor."""

import asyncio

from tests.conftest import RunningReceiver, read_vector
from tests.receiver.api.conftest import Api
from tests.receiver.helpers import stream_and_store

SHELL = "0100ed5e808d2568a7fc7a1884030000"
CURL = "0100ed5e00124468a7fc7a1885030000"
KIT = "0100ed5e001b8168a7fc7a1886030000"
CURL_EXIT_NS = 1764000000011000000


def start_ns(uuid: str) -> int:
    """A process's start time, from bytes 4-11 of its UUID."""
    return int.from_bytes(bytes.fromhex(uuid)[4:12], "little")


async def test_tree_at_a_time_between_curl_exit_and_kit_start(api: Api) -> None:
    running = api.running
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    assert start_ns(KIT) > CURL_EXIT_NS
    at = (CURL_EXIT_NS + start_ns(KIT)) // 2
    tree = await running.get("/api/v1/vms/vm-a/tree", at=str(at))
    shown = {p["uuid"] for p in tree["items"]}
    assert SHELL in shown
    assert CURL not in shown and KIT not in shown

    # Just before its exit, curl was alive.
    before = await running.get("/api/v1/vms/vm-a/tree", at=str(CURL_EXIT_NS - 1))
    assert CURL in {p["uuid"] for p in before["items"]}
    # The whole tree, narrowed to the container, holds no host process.
    container = await running.get("/api/v1/vms/vm-a/tree", container_id="2")
    assert {p["container_id"] for p in container["items"]} == {2}
    assert SHELL in {p["uuid"] for p in container["items"]}


async def test_tree_errors(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/vms/vm-a/tree", params={"at": "soon"})
    assert status == 400 and body["parameter"] == "at"
    assert body["type"] == "about:blank"
    status, _ = await api.call("GET", "/api/v1/vms/ghost/tree")
    assert status == 404


async def test_events_filters(api: Api) -> None:
    running = api.running
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    events = await collect(running, {"vm": "vm-a", "limit": "7"})
    assert events and all(e["vm"] == "vm-a" for e in events)
    kinds = {e["type"] for e in events}
    assert {"execute", "exit", "memexec"} <= kinds
    execs = await collect(running, {"type": "execute"})
    assert execs and {e["type"] for e in execs} == {"execute"}
    curl = next(e for e in execs if e["process_uuid"] == CURL)
    assert curl["event"]["execute"]["proc"]["args"]["argv"][0] == "curl"
    boot = events[0]["boot"]
    assert len(await collect(running, {"boot": boot})) == len(events)
    assert await collect(running, {"boot": "00000001"}) == []
    late = await collect(running, {"since": str(CURL_EXIT_NS)})
    early = await collect(running, {"until": str(CURL_EXIT_NS)})
    assert len(late) + len(early) == len(events)

    for params, parameter in [
        ({"type": "reboot"}, "type"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"since": "99999999999999999999"}, "since"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"boot": "xyz"}, "boot"),
        ({"vm": "no spaces"}, "vm"),
    ]:
        status, body = await api.call("GET", "/api/v1/events", params=params)
        assert status == 400, (params, body)
        assert body["parameter"] == parameter
    status, _ = await api.call("GET", "/api/v1/events", params={"vm": "ghost"})
    assert status == 404


async def collect(running: RunningReceiver, params: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    query = dict(params)
    while True:
        page = await running.get("/api/v1/events", **query)
        items.extend(page["items"])
        if page["next"] is None:
            return items
        query["cursor"] = page["next"]


async def test_event_cursor_is_exact_while_events_arrive(api: Api) -> None:
    running = api.running
    data = read_vector("web-pod.bin")
    await stream_and_store(running, "vm-a", data)
    first = await running.get("/api/v1/events", limit="5")
    stored_before = len(await collect(running, {}))

    # New events land between pages: on another VM and on the same one.
    seen = list(first["items"])
    cursor = first["next"]
    writers = asyncio.gather(
        stream_and_store(running, "vm-b", data), stream_and_store(running, "vm-a", data)
    )
    while cursor is not None:
        page = await running.get("/api/v1/events", limit="5", cursor=cursor)
        seen.extend(page["items"])
        cursor = page["next"]
        await asyncio.sleep(0)
    await writers
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)), "no event twice, none out of order"
    total = await collect(running, {})
    assert len(total) == 3 * stored_before
    # Every event stored before paging began was seen.
    assert set(e["id"] for e in total[:stored_before]) <= set(ids)
    # And a fresh walk after the inserts sees all of them exactly once.
    assert [e["id"] for e in total] == sorted({e["id"] for e in total})
