"""The web-pod vector yields exactly its four findings, stored, served,
published live, logged and counted, once each."""

import json
import logging

import pytest

from tests.conftest import VECTORS, RunningReceiver, read_vector
from tests.receiver.helpers import all_items, stream_and_store

EXPECTED = json.loads((VECTORS / "web-pod.expected.json").read_text())["findings"]
CURL = "0100ed5e00124468a7fc7a1885030000"


def _shown(findings: list[dict]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["process_uuid"]) for f in findings)


def _expected() -> list[tuple[str, str]]:
    return sorted((f["kind"], f["process"]) for f in EXPECTED)


async def test_web_pod_yields_exactly_the_expected_findings(
    receiver: RunningReceiver,
) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    findings = await all_items(receiver, "/api/v1/findings", limit=1)

    assert _shown(findings) == _expected()
    by_kind = {f["kind"]: f for f in findings}
    added = by_kind["added_binary_executed"]
    assert added["details"]["written_by_uuid"] == CURL
    assert added["details"]["binary"] == "/tmp/kit"
    assert added["severity"] == "high"
    assert by_kind["reverse_shell"]["severity"] == "critical"
    assert by_kind["reverse_shell"]["details"]["remote"]["port"] == 4444
    assert by_kind["added_library_loaded"]["details"]["path"] == (
        "/tmp/.cache/libhook.so"
    )
    session = by_kind["exec_session_started"]
    assert session["severity"] == "info"
    assert session["exec_session_id"] == 7 and session["container_id"] == 2
    assert session["details"]["argv"] == ["sh"]
    assert session["details"]["container"]["container_name"] == "nginx"
    for finding in findings:
        process = await receiver.get(
            f"/api/v1/vms/vm-a/processes/{finding['process_uuid']}"
        )
        assert finding["vm"] == "vm-a"
        assert finding["boot"] == process["boot"]
        assert finding["at"].endswith("Z")


async def test_replaying_the_stream_adds_no_finding(receiver: RunningReceiver) -> None:
    data = read_vector("web-pod.bin")
    await stream_and_store(receiver, "vm-a", data)
    await stream_and_store(receiver, "vm-a", data)
    findings = await all_items(receiver, "/api/v1/findings")
    assert _shown(findings) == _expected()
    assert sum(receiver.service.detector.found.values()) == len(EXPECTED)


async def test_findings_are_kept_apart_per_vm_and_filtered(
    receiver: RunningReceiver,
) -> None:
    data = read_vector("web-pod.bin")
    await stream_and_store(receiver, "vm-a", data)
    await stream_and_store(receiver, "vm-b", data)

    everything = await all_items(receiver, "/api/v1/findings")
    assert len(everything) == 2 * len(EXPECTED)
    only_b = await all_items(receiver, "/api/v1/findings", vm="vm-b")
    assert _shown(only_b) == _expected() and {f["vm"] for f in only_b} == {"vm-b"}
    shells = await all_items(receiver, "/api/v1/findings", kind="reverse_shell")
    assert sorted(f["vm"] for f in shells) == ["vm-a", "vm-b"]
    late = await all_items(
        receiver, "/api/v1/findings", since="2025-11-24T16:00:00.013000000Z"
    )
    assert {f["kind"] for f in late} == {"added_library_loaded", "reverse_shell"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"kind": "Not A Kind"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
async def test_bad_filters_are_refused_by_name(
    receiver: RunningReceiver, params: dict[str, str], parameter: str
) -> None:
    url = receiver.api_url + "/api/v1/findings"
    async with receiver.http.get(url, params=params) as response:
        body = await response.json(content_type=None)
    assert response.status == 400
    assert body["parameter"] == parameter


async def test_unknown_vm_filter_is_404(receiver: RunningReceiver) -> None:
    url = receiver.api_url + "/api/v1/findings"
    async with receiver.http.get(url, params={"vm": "nope"}) as response:
        assert response.status == 404


async def test_findings_are_published_logged_and_counted(
    receiver: RunningReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="receiver.findings")
    live = receiver.service.hub.subscribe(lambda m: m.kind == "finding")
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))

    messages, missed = await live.next_batch(1.0)
    assert missed == 0
    assert _shown([m.data for m in messages]) == _expected()
    assert {m.vm for m in messages} == {"vm-a"}

    lines = [r for r in caplog.records if r.name == "receiver.findings"]
    assert len(lines) == len(EXPECTED)
    logged = [json.loads(r.getMessage().removeprefix("finding ")) for r in lines]
    assert _shown(logged) == _expected()

    async with receiver.http.get(receiver.api_url + "/metrics") as response:
        metrics = await response.text()
    assert 'csm_findings_total{kind="reverse_shell",severity="critical"} 1.0' in metrics
    assert 'csm_findings_total{kind="exec_session_started",severity="info"} 1.0' in (
        metrics
    )
