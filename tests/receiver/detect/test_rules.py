"""Operator rules: validated whole at load, matched on process events,
reloaded through the API without a restart."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.detect.errors import RulesError
from receiver.detect.rules import load_rules
from receiver.service import Service
from tests.conftest import RunningReceiver, make_settings, start_receiver, stop_receiver
from tests.receiver.detect.streams import GuestStream, pipe, tcp
from tests.receiver.helpers import all_items, stream_and_store

MINER_RULE = """
[[rules]]
name = "miner"
kind = "crypto_miner"
severity = "high"
description = "A known miner started in a container"
match = { binary = ["*/xmrig", "*/minerd"], in_container = true }
"""

CURL_PIPE_RULE = """
[[rules]]
name = "curl-from-web"
kind = "web_server_download"
severity = "medium"
[rules.match]
binary = "*/curl"
argv = "curl * http://*"
parent_binary = "*/nginx"
container = "nginx"
image = "docker.io/library/nginx:*"
layer = "image"
stdout = "pipe"
"""


def _write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _pod(stream: GuestStream) -> None:
    stream.execute(1, "/sbin/init", ["/sbin/init"], layer=None)
    stream.execute(100, "/usr/bin/containerd-shim", ["shim"], parent=1, layer=None)
    stream.execute(200, "/usr/sbin/nginx", ["nginx"], parent=100, container_id=3)
    stream.container(3, "nginx", 200)


@pytest.fixture
async def ruled(
    db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningReceiver, Path]]:
    """A receiver whose rules file holds the miner rule."""
    path = _write(tmp_path, MINER_RULE)
    settings = make_settings(tmp_path, db_url, ["vm-a"], rules=str(path))
    running = await start_receiver(settings)
    try:
        yield running, path
    finally:
        await stop_receiver(running)


def _pid(finding: dict) -> int:
    return int.from_bytes(bytes.fromhex(finding["process_uuid"])[12:], "little")


def test_a_valid_file_loads_every_rule(tmp_path: Path) -> None:
    rules = load_rules(str(_write(tmp_path, MINER_RULE + CURL_PIPE_RULE)))
    assert [r.name for r in rules.rules] == ["miner", "curl-from-web"]
    assert rules.needs_parent and rules.needs_container
    assert rules.rules[1].as_json()["match"]["layer"] == "image"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINER_RULE.replace('severity = "high"\n', ""),
            "rule 1 ('miner'): field 'severity': missing",
        ),
        (
            MINER_RULE.replace('"high"', '"urgent"'),
            "rule 1 ('miner'): field 'severity': expected one of info, low, medium,"
            " high, critical, got 'urgent'",
        ),
        (
            MINER_RULE.replace("in_container = true", 'layer = "upper"'),
            "rule 1 ('miner'): field 'match.layer': expected one of added, image,"
            " modified, got 'upper'",
        ),
        (
            MINER_RULE.replace("binary =", "binaryy ="),
            "rule 1 ('miner'): field 'match.binaryy': unknown condition",
        ),
        (
            MINER_RULE.replace("in_container = true", 'in_container = "yes"'),
            "rule 1 ('miner'): field 'match.in_container': expected true or false",
        ),
        (
            MINER_RULE.replace('["*/xmrig", "*/minerd"]', "[42]"),
            "rule 1 ('miner'): field 'match.binary': each glob is a string",
        ),
        (
            MINER_RULE + CURL_PIPE_RULE.replace('stdout = "pipe"', 'stdout = "sock"'),
            "rule 2 ('curl-from-web'): field 'match.stdout': expected one of",
        ),
        (
            MINER_RULE.replace('"crypto_miner"', '"reverse_shell"'),
            "rule 1 ('miner'): field 'kind': 'reverse_shell' is a built-in detection",
        ),
        (
            MINER_RULE.replace("severity =", "sevrity ="),
            "rule 1 ('miner'): field 'sevrity': unknown",
        ),
        (MINER_RULE + MINER_RULE, "rule 2 ('miner'): field 'name': duplicate"),
        (
            MINER_RULE.replace('name = "miner"\n', ""),
            "rule 1: field 'name': missing",
        ),
        ("[[rules]\nname = ", "not valid TOML"),
        ("[[rule]]\nname = 'x'\n", "unknown top-level keys rule"),
    ],
)
def test_a_malformed_file_is_refused_naming_rule_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RulesError) as refused:
        load_rules(str(path))
    assert str(refused.value).startswith(f"rules file {path}")
    assert message in str(refused.value)


async def test_the_service_does_not_start_with_a_malformed_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, MINER_RULE.replace('"high"', '"urgent"'))
    service = Service(make_settings(tmp_path, sqlite_url, [], rules=str(path)))
    try:
        with pytest.raises(RulesError, match="field 'severity'"):
            await service.start()
    finally:
        await service.stop()


async def test_matching_rules_fire_and_others_stay_quiet(
    db_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, MINER_RULE + CURL_PIPE_RULE)
    running = await start_receiver(
        make_settings(tmp_path, db_url, ["vm-a"], rules=str(path))
    )
    try:
        stream = GuestStream()
        _pod(stream)
        pod = {"parent": 200, "container_id": 3}
        stream.execute(300, "/opt/xmrig", ["xmrig"], **pod)
        stream.execute(301, "/opt/xmrig", ["xmrig"], parent=1, layer=None)
        stream.execute(
            302, "/usr/bin/curl", ["curl", "-s", "http://x/y"], stdout=pipe(), **pod
        )
        stream.execute(
            303,
            "/usr/bin/curl",
            ["curl", "-s", "http://x/y"],
            stdout=tcp("192.0.2.1", 80),
            **pod,
        )
        stream.execute(
            304, "/usr/bin/curl", ["curl", "-s", "ftp://x/y"], stdout=pipe(), **pod
        )
        await stream_and_store(running, "vm-a", stream.data())
        findings = await all_items(running, "/api/v1/findings")
        assert sorted((f["kind"], _pid(f)) for f in findings) == [
            ("crypto_miner", 300),
            ("web_server_download", 302),
        ]
        miner = next(f for f in findings if f["kind"] == "crypto_miner")
        assert miner["severity"] == "high"
        assert miner["details"]["rule"] == "miner"
        assert miner["details"]["description"] == "A known miner started in a container"
        assert miner["details"]["container"]["container_name"] == "nginx"
    finally:
        await stop_receiver(running)


async def test_a_reload_takes_effect_without_a_restart(
    ruled: tuple[RunningReceiver, Path],
) -> None:
    running, path = ruled
    stream = GuestStream()
    _pod(stream)
    pod = {"parent": 200, "container_id": 3}
    stream.execute(
        300, "/usr/bin/curl", ["curl", "-s", "http://x/y"], stdout=pipe(), **pod
    )
    await stream_and_store(running, "vm-a", stream.data())
    assert await all_items(running, "/api/v1/findings") == []

    path.write_text(CURL_PIPE_RULE)
    async with running.http.post(running.api_url + "/api/v1/rules/reload") as response:
        body = await response.json()
    assert response.status == 200, body
    assert [r["name"] for r in body["items"]] == ["curl-from-web"]

    stream.execute(
        301, "/usr/bin/curl", ["curl", "-s", "http://x/z"], stdout=pipe(), **pod
    )
    stream.execute(302, "/opt/xmrig", ["xmrig"], **pod)
    await stream_and_store(running, "vm-a", stream.data())
    findings = await all_items(running, "/api/v1/findings")
    assert [(f["kind"], _pid(f)) for f in findings] == [("web_server_download", 301)]
    assert running.service.detector.reloads["ok"] == 1


async def test_a_refused_reload_keeps_the_rules_in_force(
    ruled: tuple[RunningReceiver, Path],
) -> None:
    running, path = ruled
    path.write_text(MINER_RULE.replace("in_container", "in_containr"))
    async with running.http.post(running.api_url + "/api/v1/rules/reload") as response:
        body = await response.json(content_type=None)
    assert response.status == 422
    assert "rule 1 ('miner'): field 'match.in_containr'" in body["detail"]

    stream = GuestStream()
    _pod(stream)
    stream.execute(300, "/opt/xmrig", ["xmrig"], parent=200, container_id=3)
    await stream_and_store(running, "vm-a", stream.data())
    findings = await all_items(running, "/api/v1/findings")
    assert [f["kind"] for f in findings] == ["crypto_miner"]
    rules = await running.get("/api/v1/rules")
    assert [r["name"] for r in rules["items"]] == ["miner"]
    assert running.service.detector.reloads["refused"] == 1


async def test_reloading_needs_an_operator(
    ruled: tuple[RunningReceiver, Path],
) -> None:
    running, _path = ruled
    running.service.tokens.add("viewer-token", role="viewer", label="viewer")
    async with running.http.post(
        running.api_url + "/api/v1/rules/reload",
        headers={"Authorization": "Bearer viewer-token"},
    ) as response:
        assert response.status == 403


async def test_reloading_without_a_rules_file_is_a_conflict(
    receiver: RunningReceiver,
) -> None:
    async with receiver.http.post(
        receiver.api_url + "/api/v1/rules/reload"
    ) as response:
        assert response.status == 409
    rules = await receiver.get("/api/v1/rules")
    assert rules["items"] == [] and rules["path"] is None
