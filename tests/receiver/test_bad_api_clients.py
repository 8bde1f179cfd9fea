"""Bad API clients get a clear 4xx problem and change nothing."""

import base64
import io
import json

import aiohttp
import pytest

from tests.conftest import RunningReceiver, read_vector
from tests.receiver.helpers import stream_and_store

PROBLEM = "application/problem+json"


async def _problem(
    running: RunningReceiver,
    path: str,
    status: int,
    headers: dict | None = None,
    **params: str,
) -> dict:
    session = (
        running.http if headers is None else aiohttp.ClientSession(headers=headers)
    )
    try:
        async with session.get(running.api_url + path, params=params) as response:
            assert response.status == status, await response.text()
            assert response.content_type == PROBLEM
            body = await response.json(content_type=None)
    finally:
        if headers is not None:
            await session.close()
    assert body["status"] == status and body["title"]
    return body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer "},
        {"Authorization": "test-operator-token"},
    ],
)
async def test_missing_or_wrong_tokens_get_401(
    receiver: RunningReceiver, headers: dict
) -> None:
    for path in ["/api/v1/vms", "/api/v1/vms/vm-a/processes", "/metrics"]:
        await _problem(receiver, path, 401, headers=headers)


async def test_health_needs_no_token(receiver: RunningReceiver) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(receiver.api_url + "/healthz") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"limit": "100000"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'["processes",1,2]').decode()}, "cursor"),
        (
            {"cursor": base64.urlsafe_b64encode(b'["containers",1,2]').decode()},
            "cursor",
        ),
        (
            {
                "cursor": base64.urlsafe_b64encode(
                    json.dumps(
                        ["processes", 1, 2, "'; DROP TABLE processes; --"]
                    ).encode()
                ).decode()
            },
            "cursor",
        ),
        ({"boot": "xyz"}, "boot"),
        ({"container_id": "1 OR 1=1"}, "container_id"),
        ({"container_id": str(2**64)}, "container_id"),
        ({"alive": "maybe"}, "alive"),
        ({"since": "yesterday"}, "since"),
        ({"binary": "x" * 5000}, "binary"),
    ],
)
async def test_bad_parameters_get_400_naming_them(
    receiver: RunningReceiver, params: dict, parameter: str
) -> None:
    body = await _problem(receiver, "/api/v1/vms/vm-a/processes", 400, **params)
    assert body["parameter"] == parameter
    assert parameter in body["detail"]


@pytest.mark.parametrize(
    "name",
    ["nope", "vm-a'; DROP TABLE vms; --", "..%2F..%2Fetc%2Fpasswd", "%00", "vm-a%27"],
)
async def test_unknown_or_hostile_vm_names_get_404(
    receiver: RunningReceiver, name: str
) -> None:
    await _problem(receiver, f"/api/v1/vms/{name}/processes", 404)


async def test_path_traversal_and_bad_uuids(receiver: RunningReceiver) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    await _problem(receiver, "/api/v1/vms/vm-a/processes/../../etc/passwd", 404)
    body = await _problem(receiver, "/api/v1/vms/vm-a/processes/zz", 400)
    assert body["parameter"] == "uuid"
    await _problem(receiver, "/api/v1/vms/vm-a/processes/" + "00" * 16, 404)


async def test_hostile_requests_change_nothing(receiver: RunningReceiver) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    before = await receiver.get("/api/v1/vms/vm-a/processes")
    await _problem(receiver, "/api/v1/vms/vm-a'; DELETE FROM processes; --", 404)
    found = await receiver.get(
        "/api/v1/vms/vm-a/processes", binary="'; DELETE FROM processes; --"
    )
    assert found["items"] == []
    assert await receiver.get("/api/v1/vms/vm-a/processes") == before


async def test_oversized_body_gets_413(receiver: RunningReceiver) -> None:
    async with receiver.http.post(
        receiver.api_url + "/api/v1/vms", data=io.BytesIO(b"x" * (2 << 20))
    ) as response:
        assert response.status in {405, 413}
        assert response.content_type == PROBLEM


async def test_unknown_route_is_a_problem_404(receiver: RunningReceiver) -> None:
    await _problem(receiver, "/api/v1/nothing-here", 404)
