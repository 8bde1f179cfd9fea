"""The live stream, the metrics, and tokens with roles."""

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from receiver.api.auth import TokenStore, add_token_to_file, digest
from receiver.api.stream import STREAM_BUFFER_MESSAGES
from receiver.errors import ConfigError
from tests.conftest import TEST_TOKEN, read_vector
from tests.receiver.api.conftest import Api
from tests.receiver.helpers import stream_and_store


class SseReader:
    """Reads server-sent events from a streaming response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> tuple[str, dict]:
        """The next event's name and data, skipping comments."""
        kind, data = "", ""
        while True:
            line = (
                await asyncio.wait_for(self.response.content.readline(), 10)
            ).decode()
            if line == "\n" and kind:
                return kind, json.loads(data)
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: "):
                data = line[6:].strip()


async def open_stream(api: Api, **params: str) -> aiohttp.ClientResponse:
    response = await api.running.http.get(api.url + "/api/v1/stream", params=params)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    # The server says hello once the subscription is in place.
    assert await response.content.readline() == b": connected\n"
    await response.content.readline()
    return response


async def test_stream_sends_stored_events_of_the_chosen_vm(api: Api) -> None:
    response = await open_stream(api, vm="vm-a", kind="event")
    await stream_and_store(api.running, "vm-b", read_vector("web-pod.bin"))
    await stream_and_store(api.running, "vm-a", read_vector("web-pod.bin"))
    reader = SseReader(response)
    kind, data = await reader.next()
    assert kind == "event" and data["vm"] == "vm-a"
    assert data["type"] in {"execute", "enumproc", "clone", "container"}
    assert len(data["boot"]) == 8
    response.close()


async def test_slow_stream_client_is_told_what_it_missed(api: Api) -> None:
    response = await open_stream(api, kind="finding")
    hub = api.running.service.hub
    total = STREAM_BUFFER_MESSAGES + 500
    for n in range(total):
        hub.publish("finding", "vm-a", {"kind": "reverse_shell", "n": n})
        hub.publish("event", "vm-a", {"ignored": True})
    reader = SseReader(response)
    kind, data = await reader.next()
    assert (kind, data) == ("missed", {"missed": 500})
    kind, data = await reader.next()
    assert kind == "finding" and data["n"] == 500 and data["vm"] == "vm-a"
    response.close()


async def test_stream_parameters_are_checked(api: Api) -> None:
    for params, status, parameter in [
        ({"kind": "gossip"}, 400, "kind"),
        ({"vm": "bad name"}, 400, "vm"),
        ({"vm": "ghost"}, 404, None),
    ]:
        code, body = await api.call("GET", "/api/v1/stream", params=params)
        assert code == status
        assert body.get("parameter") == parameter


async def test_metrics_cover_vms_ingest_and_store(api: Api) -> None:
    await stream_and_store(api.running, "vm-a", read_vector("web-pod.bin"))
    async with api.running.http.get(api.url + "/metrics") as response:
        text = await response.text()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")
    )
    assert samples['csm_vm_state{state="disconnected",vm="vm-a"}'] == "1.0"
    assert samples['csm_vm_state{state="healthy",vm="vm-a"}'] == "0.0"
    assert float(samples['csm_vm_frames_total{vm="vm-a"}']) > 0
    assert float(samples['csm_vm_bytes_total{vm="vm-a"}']) == len(
        read_vector("web-pod.bin")
    )
    assert samples['csm_vm_decode_errors_total{vm="vm-a"}'] == "0.0"
    assert 'csm_vm_drops_total{cause="host_queue_full",vm="vm-a"}' in samples
    assert float(samples["csm_db_batch_duration_seconds_count"]) >= 1
    assert float(samples["csm_ingest_lag_seconds_count"]) > 0
    assert samples["csm_ingest_queue_depth"] == "0.0"


async def test_tokens_roles_and_401s(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/vms", token="wrong")
    assert status == 401 and body["status"] == 401
    async with aiohttp.ClientSession() as bare:
        async with bare.get(api.url + "/api/v1/vms") as response:
            assert response.status == 401
            assert response.content_type == "application/problem+json"
        async with bare.get(api.url + "/healthz") as response:
            assert response.status == 200
    headers = {"Authorization": f"Bearer {api.viewer_token}"}
    async with api.running.http.get(api.url + "/metrics", headers=headers) as response:
        assert response.status == 200
    status, body = await api.call("GET", "/api/v1/vms", token=api.viewer_token)
    assert status == 200 and len(body["items"]) == 2
    # The changer's label goes into the history.
    viewer_put = await api.call(
        "PUT", "/api/v1/vms/vm-b/config", json={}, token=api.viewer_token
    )
    assert viewer_put[0] == 403
    status, _ = await api.call(
        "PUT", "/api/v1/vms/vm-b/config", json={}, token=TEST_TOKEN
    )
    assert status == 202
    _, changes = await api.call("GET", "/api/v1/vms/vm-b/config/history")
    assert [c["changed_by"] for c in changes["items"]] == ["operator"]


async def test_operator_from_tokens_file_is_named_in_history(
    api: Api, tmp_path: Path
) -> None:
    path = tmp_path / "more-tokens"
    token = add_token_to_file(path, role="operator", label="bob")
    api.running.service.tokens.load_file(path)
    status, _ = await api.call("PUT", "/api/v1/vms/vm-b/config", json={}, token=token)
    assert status == 202
    _, changes = await api.call("GET", "/api/v1/vms/vm-b/config/history")
    assert changes["items"][0]["changed_by"] == "bob"


def test_tokens_file_keeps_only_digests(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = add_token_to_file(path, role="viewer", label="carol")
    text = path.read_text()
    assert token not in text
    assert text.split() == [digest(token).hex(), "viewer", "carol"]
    assert path.stat().st_mode & 0o777 == 0o600
    store = TokenStore()
    assert store.load_file(path) == 1
    principal = store.authenticate(token)
    assert principal is not None and principal.label == "carol"
    assert store.authenticate(token + "x") is None


@pytest.mark.parametrize(
    "line",
    [
        "abc viewer x",
        f"{'0' * 64} admin x",
        f"{'0' * 64} viewer",
        f"{'g' * 64} viewer x",
    ],
)
def test_malformed_tokens_file_is_a_config_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\n" + line + "\n")
    with pytest.raises(ConfigError, match="tokens:2"):
        TokenStore().load_file(path)
