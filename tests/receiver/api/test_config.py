"""Configuration: validated, stored, pushed to guests, answers recorded."""

import asyncio

import pytest

from csm_wire.codec import FrameType
from csm_wire.gen import schema_pb2 as pb
from tests.receiver.api.conftest import Api
from tests.receiver.guests import AnsweringGuest, AnswerMode
from tests.receiver.helpers import wait_for

CONFIG = {
    "container_config": {"enabled": True},
    "execute_config": {
        "enabled": True,
        "argv_limit": 2048,
        "envp_limit": 512,
        "envp_allowlist": ["PATH", "LANG"],
    },
    "memexec_config": None,
}


async def connected_guest(api: Api, vm: str, mode: AnswerMode) -> AnsweringGuest:
    """A guest that has received and answered its connect-time config."""
    guest = await AnsweringGuest.connect(api.running.sockets[vm], mode)
    await guest.wait_requests(1)
    state = api.running.service.registry.get(vm)
    assert state is not None
    await wait_for(lambda: state.counters.config_responses >= 1, "first answer")
    return guest


async def history(api: Api, vm: str) -> list[dict]:
    status, body = await api.call("GET", f"/api/v1/vms/{vm}/config/history")
    assert status == 200
    return body["items"]


@pytest.mark.parametrize("mode", [AnswerMode.TYPE_4, AnswerMode.TYPE_2])
async def test_put_reaches_the_guest_and_returns_its_answer(
    api: Api, mode: AnswerMode
) -> None:
    guest = await connected_guest(api, "vm-a", mode)
    status, body = await api.call("PUT", "/api/v1/vms/vm-a/config", json=CONFIG)
    assert status == 200, body
    assert body["status"] == "applied"
    assert body["delivery"] == "answered"
    assert body["answer"]["error"] == "NO_ERROR"
    assert body["answer"]["legacy_type"] is (mode is AnswerMode.TYPE_2)
    assert body["answer"]["kernel_version"] == (4 << 16) | (19 << 8)

    # A v1 guest only ever receives type-3 frames; the pushed one carries
    # exactly the fields that were PUT.
    assert set(guest.frame_types) == {FrameType.CONFIG_REQUEST}
    pushed = guest.requests[-1]
    assert pushed.execute_config.argv_limit == 2048
    assert pushed.execute_config.envp_limit == 512
    assert list(pushed.execute_config.envp_allowlist) == ["PATH", "LANG"]
    assert pushed.container_config.enabled
    assert not pushed.HasField("memexec_config")

    changes = await history(api, "vm-a")
    assert changes[0]["status"] == "applied"
    assert changes[0]["changed_by"] == "operator"
    assert changes[0]["response"]["error"] == "NO_ERROR"
    assert changes[0]["config"] == CONFIG
    await guest.close()


async def test_guest_rejection_is_reported(api: Api) -> None:
    guest = await AnsweringGuest.connect(
        api.running.sockets["vm-a"],
        AnswerMode.TYPE_4,
        error=pb.ConfigurationResponse.UNKNOWN,
    )
    await guest.wait_requests(1)
    status, body = await api.call("PUT", "/api/v1/vms/vm-a/config", json=CONFIG)
    assert status == 200
    assert body["status"] == "rejected"
    assert body["answer"]["error"] == "UNKNOWN"
    assert (await history(api, "vm-a"))[0]["status"] == "rejected"
    await guest.close()


async def test_silent_guest_times_out_and_the_change_stays_pending(api: Api) -> None:
    guest = await connected_guest(api, "vm-a", AnswerMode.TYPE_4)
    guest.mode = AnswerMode.SILENT
    status, body = await api.call("PUT", "/api/v1/vms/vm-a/config", json=CONFIG)
    assert status == 202
    assert body["status"] == "pending"
    assert body["delivery"] == "timeout"
    assert "did not answer within 0.5s" in body["detail"]
    assert (await history(api, "vm-a"))[0]["status"] == "pending"
    _, shown = await api.call("GET", "/api/v1/vms/vm-a/config")
    assert shown["pending"] is True and shown["generation"] == body["generation"]

    # A late answer still lands in the history.
    await guest.answer_late()
    await wait_for_status(api, "vm-a", "applied")
    await guest.close()


async def wait_for_status(api: Api, vm: str, wanted: str) -> None:
    for _ in range(500):
        if (await history(api, vm))[0]["status"] == wanted:
            return
        await api.running.settle()
    raise AssertionError(f"change never became {wanted}")


async def test_config_for_a_disconnected_vm_is_sent_on_connect(api: Api) -> None:
    status, body = await api.call("PUT", "/api/v1/vms/vm-b/config", json=CONFIG)
    assert status == 202
    assert body["delivery"] == "not_connected"
    assert (await history(api, "vm-b"))[0]["status"] == "pending"

    guest = await AnsweringGuest.connect(api.running.sockets["vm-b"])
    try:
        await guest.wait_requests(1)
        assert guest.requests[0].execute_config.argv_limit == 2048
        await wait_for_status(api, "vm-b", "applied")
        # The change's status and the VM's last answer are two writes.
        for _ in range(500):
            _, shown = await api.call("GET", "/api/v1/vms/vm-b/config")
            if shown["last_answer"] is not None:
                break
            await asyncio.sleep(0.02)
        assert shown["source"] == "vm"
        assert shown["pending"] is False
        assert shown["last_answer"]["generation"] == body["generation"]
        assert shown["last_answer"]["config"] == CONFIG
    finally:
        await guest.close()


async def test_fleet_default_applies_to_vms_without_their_own(api: Api) -> None:
    _, builtin = await api.call("GET", "/api/v1/vms/vm-b/config")
    assert builtin["source"] == "builtin"
    guest = await connected_guest(api, "vm-b", AnswerMode.TYPE_4)
    fleet = {"container_config": {"enabled": False}}
    status, body = await api.call("PUT", "/api/v1/config", json=fleet)
    assert status == 200, body
    assert body["vms"]["vm-b"]["answer"]["error"] == "NO_ERROR"
    assert not guest.requests[-1].container_config.enabled
    assert not guest.requests[-1].HasField("execute_config")

    _, shown = await api.call("GET", "/api/v1/vms/vm-b/config")
    assert shown["source"] == "fleet" and shown["scope"] == "*"
    await api.call("PUT", "/api/v1/vms/vm-a/config", json=CONFIG)
    _, own = await api.call("GET", "/api/v1/vms/vm-a/config")
    assert own["source"] == "vm"
    status, changes = await api.call("GET", "/api/v1/config/history")
    assert status == 200 and changes["items"][0]["status"] == "stored"
    await guest.close()


@pytest.mark.parametrize(
    ("document", "parameter"),
    [
        ({"execute_config": {"argv_limit": 70000}}, "execute_config.argv_limit"),
        ({"execute_config": {"envp_limit": -1}}, "execute_config.envp_limit"),
        ({"execute_config": {"argv_limit": "4k"}}, "execute_config.argv_limit"),
        (
            {"execute_config": {"envp_allowlist": ["PATH", "1BAD"]}},
            "execute_config.envp_allowlist[1]",
        ),
        (
            {"execute_config": {"envp_allowlist": ["A=B"]}},
            "execute_config.envp_allowlist[0]",
        ),
        (
            {"execute_config": {"envp_allowlist": ["X", "X"]}},
            "execute_config.envp_allowlist",
        ),
        ({"memexec_config": {"enabled": "yes"}}, "memexec_config.enabled"),
        ({"surprise": {}}, "body.surprise"),
        ([1, 2], "body"),
        (
            {
                "execute_config": {
                    "envp_allowlist": [
                        f"VARIABLE_NUMBER_{n:03d}_{'X' * 20}" for n in range(128)
                    ]
                }
            },
            "body",
        ),
    ],
)
async def test_invalid_configuration_is_a_400_naming_the_field(
    api: Api, document: object, parameter: str
) -> None:
    status, body = await api.call("PUT", "/api/v1/vms/vm-a/config", json=document)
    assert status == 400, body
    assert body["parameter"] == parameter
    assert (await history(api, "vm-a")) == []


async def test_viewer_reads_but_cannot_change_configuration(api: Api) -> None:
    status, body = await api.call(
        "PUT", "/api/v1/vms/vm-a/config", json=CONFIG, token=api.viewer_token
    )
    assert status == 403, body
    status, _ = await api.call(
        "PUT", "/api/v1/config", json=CONFIG, token=api.viewer_token
    )
    assert status == 403
    status, body = await api.call(
        "GET", "/api/v1/vms/vm-a/config", token=api.viewer_token
    )
    assert status == 200 and body["source"] == "builtin"


async def test_unknown_vm_config_is_404(api: Api) -> None:
    status, body = await api.call("PUT", "/api/v1/vms/nope/config", json=CONFIG)
    assert status == 404, body
    status, _ = await api.call("GET", "/api/v1/vms/nope/config/history")
    assert status == 404
