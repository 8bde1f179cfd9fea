"""Three receivers (hosts) on one database: one view through any of them."""

from contextlib import AsyncExitStack
from pathlib import Path

from tests.conftest import (
    GuestConnection,
    RunningReceiver,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.events import BASE_NS, execute, heartbeat, make_uuid
from tests.receiver.fleet.polling import poll_until
from tests.receiver.helpers import all_items, stream_and_store

HOSTS = {"host-a": ["web"], "host-b": ["web"], "host-c": ["db"]}


def synthetic_stream(machine_id: int, count: int) -> tuple[bytes, set[str]]:
    """A heartbeat and ``count`` execs of one boot; and their UUIDs."""
    frames = [heartbeat()]
    uuids = set()
    for n in range(count):
        uuid = make_uuid(machine_id, BASE_NS + n, 100 + n)
        frames.append(execute(uuid, None, f"/bin/job{n}", ["job"], BASE_NS + n))
        uuids.add(uuid.hex())
    return b"".join(frames), uuids


async def start_fleet(
    stack: AsyncExitStack, tmp_path: Path, db_url: str
) -> dict[str, RunningReceiver]:
    """One receiver per host, each with its own hybrid VMs."""
    fleet = {}
    for host, vms in HOSTS.items():
        settings = make_settings(
            tmp_path / host, db_url, vms, host=host, fleet_heartbeat_s=0.2
        )
        running = await start_receiver(settings)
        stack.push_async_callback(stop_receiver, running)
        fleet[host] = running
    return fleet


async def feed_fleet(fleet: dict[str, RunningReceiver]) -> dict[str, set[str]]:
    """The web pod on both ``web`` VMs, a synthetic stream on ``db``."""
    web_pod = read_vector("web-pod.bin")
    await stream_and_store(fleet["host-a"], "web", web_pod)
    await stream_and_store(fleet["host-b"], "web", web_pod)
    db_stream, db_uuids = synthetic_stream(0x0D0D0D0D, 25)
    await stream_and_store(fleet["host-c"], "db", db_stream)
    web = {
        p["uuid"] for p in await all_items(fleet["host-a"], "/api/v1/vms/web/processes")
    }
    return {"host-a": web, "host-b": web, "host-c": db_uuids}


async def test_fleet_query_through_any_receiver_returns_every_host(
    db_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, tmp_path, db_url)
        expected = await feed_fleet(fleet)
        assert all(expected.values())

        for running in fleet.values():
            items = await all_items(running, "/api/v1/processes", limit=7)
            seen: dict[str, set[str]] = {}
            for item in items:
                seen.setdefault(item["host"], set()).add(item["uuid"])
            assert seen == expected
            assert len(items) == sum(len(u) for u in expected.values())


async def test_vms_are_named_within_their_host(db_url: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, tmp_path, db_url)
        await feed_fleet(fleet)
        via_c = fleet["host-c"]

        vms = await via_c.get("/api/v1/vms")
        assert sorted((v["host"], v["name"]) for v in vms["items"]) == [
            ("host-a", "web"),
            ("host-b", "web"),
            ("host-c", "db"),
        ]
        only_b = await via_c.get("/api/v1/vms", host="host-b")
        assert [(v["host"], v["name"]) for v in only_b["items"]] == [("host-b", "web")]

        # "web" is on two other hosts: the name alone is ambiguous there.
        async with via_c.http.get(via_c.api_url + "/api/v1/vms/web") as response:
            assert response.status == 409
        b_web = await all_items(via_c, "/api/v1/vms/web/processes", host="host-b")
        assert len(b_web) == len(
            await all_items(fleet["host-b"], "/api/v1/vms/web/processes")
        )
        # Through its own receiver the name means the local VM.
        local = await fleet["host-a"].get("/api/v1/vms/web")
        assert local["host"] == "host-a"


async def test_remote_vms_show_their_receivers_connection_state(
    db_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        fleet = await start_fleet(stack, tmp_path, db_url)
        via_a = fleet["host-a"]
        guest_stream, _ = synthetic_stream(0x0C0C0C0C, 1)
        guest = await GuestConnection.open(fleet["host-c"].sockets["db"])
        await guest.send(guest_stream)

        async def remote_db() -> dict:
            vms = await via_a.get("/api/v1/vms", host="host-c")
            return vms["items"][0]

        shown = await poll_until(remote_db, lambda vm: vm["connected"])
        assert shown["health"] == "healthy"
        assert shown["protocol"] == "v1"
        await guest.close()
        shown = await poll_until(remote_db, lambda vm: not vm["connected"])
        assert shown["health"] == "disconnected"

        hosts = await via_a.get("/api/v1/hosts")
        assert [h["host"] for h in hosts["items"]] == sorted(HOSTS)
        assert all(h["running"] for h in hosts["items"])

        # A receiver that stops gives its leases up at once.
        await fleet["host-c"].service.stop()
        await fleet["host-c"].http.close()
        hosts = await via_a.get("/api/v1/hosts")
        running = {h["host"]: h["running"] for h in hosts["items"]}
        assert running == {"host-a": True, "host-b": True, "host-c": False}
