"""VM registration at run time: open at once, removed with history kept,
and still there after a restart."""

from pathlib import Path

import pytest
from sqlalchemy import func, select

from receiver.store.models import processes
from tests.conftest import GuestConnection, read_vector, start_receiver, stop_receiver
from tests.receiver.api.conftest import Api, api_settings
from tests.receiver.guests import AnsweringGuest
from tests.receiver.helpers import stream_and_store

CONFIG = {"execute_config": {"enabled": True, "argv_limit": 100}}


async def test_registered_vm_accepts_a_stream_at_once_and_survives_restart(
    api: Api, db_url: str, tmp_path: Path
) -> None:
    uds = tmp_path / "new" / "vm-new.vsock"
    status, body = await api.call(
        "POST", "/api/v1/vms", json={"name": "vm-new", "uds_path": str(uds)}
    )
    assert status == 201, body
    assert body["name"] == "vm-new" and body["transport"] == "hybrid"
    assert body["address"] == str(uds)
    running = api.running
    running.sockets["vm-new"] = Path(f"{uds}_4444")
    await stream_and_store(running, "vm-new", read_vector("web-pod.bin"))
    status, page = await api.call("GET", "/api/v1/vms/vm-new/processes")
    assert status == 200 and len(page["items"]) == 8
    await api.call("PUT", "/api/v1/vms/vm-new/config", json=CONFIG)
    await stop_receiver(running)

    # Restart without any flag naming vm-new: it is reopened from the store.
    # The fixture stops the new receiver at the end.
    api.running = await start_receiver(api_settings(tmp_path, db_url))
    status, fleet = await api.call("GET", "/api/v1/vms")
    assert "vm-new" in [vm["name"] for vm in fleet["items"]]
    guest = await AnsweringGuest.connect(Path(f"{uds}_4444"))
    await guest.wait_requests(1)
    # It gets the configuration stored before the restart.
    assert guest.requests[0].execute_config.argv_limit == 100
    await guest.close()
    status, page = await api.call("GET", "/api/v1/vms/vm-new/processes")
    assert len(page["items"]) == 8


async def test_cid_vm_registration(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/vms", json={"name": "q1", "cid": 7})
    assert status == 201, body
    assert body["address"] == "cid:7"
    state = api.running.service.registry.by_cid[7]
    assert state.name == "q1"


async def test_delete_closes_the_listener_and_keeps_history(api: Api) -> None:
    running = api.running
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    guest = await GuestConnection.open(running.sockets["vm-a"])
    status, _ = await api.call("DELETE", "/api/v1/vms/vm-a")
    assert status == 204
    assert not running.sockets["vm-a"].exists()
    assert (await guest.reader.read()) == b""
    await guest.close()
    status, body = await api.call("GET", "/api/v1/vms/vm-a")
    assert status == 404, body
    status, fleet = await api.call("GET", "/api/v1/vms")
    assert [vm["name"] for vm in fleet["items"]] == ["vm-b"]
    async with running.service.engine.connect() as connection:
        kept = (
            await connection.execute(select(func.count()).select_from(processes))
        ).scalar()
    assert kept == 8

    # Registering the name again brings its history back.
    status, _ = await api.call(
        "POST",
        "/api/v1/vms",
        json={"name": "vm-a", "uds_path": str(running.sockets["vm-a"])[:-5]},
    )
    assert status == 201
    _, page = await api.call("GET", "/api/v1/vms/vm-a/processes")
    assert len(page["items"]) == 8


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"name": "bad name", "cid": 5}, "name"),
        ({"name": "x", "cid": 5, "uds_path": "/tmp/x"}, "uds_path"),
        ({"name": "x"}, "uds_path"),
        ({"name": "x", "uds_path": "relative/path"}, "uds_path"),
        ({"name": "x", "uds_path": "/" + "a" * 100}, "uds_path"),
        ({"name": "x", "cid": 2}, "cid"),
        ({"name": "x", "cid": True}, "cid"),
        ({"name": "x", "cid": 5, "color": "red"}, "color"),
        ("just a string", "body"),
    ],
)
async def test_bad_registration_is_a_400_naming_the_parameter(
    api: Api, body: object, parameter: str
) -> None:
    status, problem = await api.call("POST", "/api/v1/vms", json=body)
    assert status == 400, problem
    assert problem["parameter"] == parameter


async def test_registration_errors_and_roles(api: Api, tmp_path: Path) -> None:
    status, _ = await api.call("POST", "/api/v1/vms", json={"name": "vm-a", "cid": 9})
    assert status == 409
    status, _ = await api.call(
        "POST", "/api/v1/vms", json={"name": "v2", "cid": 9}, token=api.viewer_token
    )
    assert status == 403
    status, _ = await api.call("DELETE", "/api/v1/vms/vm-a", token=api.viewer_token)
    assert status == 403
    status, _ = await api.call("DELETE", "/api/v1/vms/nope")
    assert status == 404
    blocker = tmp_path / "file"
    blocker.write_text("not a socket")
    status, problem = await api.call(
        "POST",
        "/api/v1/vms",
        json={"name": "v3", "uds_path": str(blocker)[:-5] + "file"},
    )
    # "<path>_4444" does not exist, so this one opens; a regular file at the
    # socket path must not be replaced.
    assert status == 201
    (tmp_path / "occupied_4444").write_text("a regular file")
    status, problem = await api.call(
        "POST",
        "/api/v1/vms",
        json={"name": "v4", "uds_path": str(tmp_path / "occupied")},
    )
    assert status == 422, problem
    status, fleet = await api.call("GET", "/api/v1/vms")
    assert "v4" not in [vm["name"] for vm in fleet["items"]]
