"""Configuration pushed through the receiver that holds the VM's connection."""

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from csm_wire.codec import FrameDecoder, FrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response
from receiver.config import default_configuration
from receiver.fleet.errors import HostUnavailable
from receiver.fleet.relay import relay_config
from tests.conftest import (
    GuestConnection,
    RunningReceiver,
    make_settings,
    start_receiver,
    stop_receiver,
)
from tests.receiver.events import heartbeat
from tests.receiver.fleet.polling import poll_until
from tests.receiver.helpers import vm_state, wait_for


class AnsweringGuest:
    """A guest that reads the host's configuration requests."""

    def __init__(self, connection: GuestConnection) -> None:
        self.connection = connection
        self.decoder = FrameDecoder(1 << 20)
        self.frames: list = []

    async def next_request(self) -> pb.ConfigurationRequest:
        while not self.frames:
            data = await asyncio.wait_for(self.connection.reader.read(65536), 10)
            assert data, "host closed the connection"
            self.frames.extend(self.decoder.feed(data))
        frame = self.frames.pop(0)
        assert frame.type == FrameType.CONFIG_REQUEST
        request = pb.ConfigurationRequest()
        request.ParseFromString(frame.payload)
        return request

    async def answer(self, version: int) -> None:
        response = pb.ConfigurationResponse(
            error=pb.ConfigurationResponse.NO_ERROR, version=version
        )
        await self.connection.send(encode_config_response(response))


async def two_hosts(
    stack: AsyncExitStack, tmp_path: Path, db_url: str
) -> tuple[RunningReceiver, RunningReceiver]:
    receivers = []
    for host, vms in (("host-a", ["web"]), ("host-b", [])):
        settings = make_settings(
            tmp_path / host, db_url, vms, host=host, fleet_heartbeat_s=0.2
        )
        running = await start_receiver(settings)
        stack.push_async_callback(stop_receiver, running)
        receivers.append(running)
    return receivers[0], receivers[1]


def custom_config() -> pb.ConfigurationRequest:
    config = default_configuration()
    config.execute_config.argv_limit = 777
    return config


async def test_push_reaches_the_guest_through_its_receiver(
    db_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        owner, other = await two_hosts(stack, tmp_path, db_url)
        web = vm_state(owner, "web")
        guest = AnsweringGuest(await GuestConnection.open(owner.sockets["web"]))
        stack.push_async_callback(guest.connection.close)
        await guest.connection.send(heartbeat())
        first = await guest.next_request()
        assert first.execute_config.argv_limit != 777
        await guest.answer(1)
        await wait_for(lambda: web.counters.config_responses == 1, "first answer")
        await poll_until(
            lambda: other.get("/api/v1/vms", host="host-a"),
            lambda body: body["items"][0]["connected"],
        )

        relayed = asyncio.create_task(
            relay_config(
                other.service.engine,
                vm_id=web.vm_id,
                config=custom_config(),
                requested_by="host-b",
                timeout_s=5,
            )
        )
        request = await guest.next_request()
        assert request.execute_config.argv_limit == 777
        await guest.answer(2)
        outcome = await relayed

        assert (outcome.host, outcome.delivery) == ("host-a", "answered")
        assert outcome.answer is not None
        assert outcome.answer["error"] == "NO_ERROR"
        assert outcome.answer["version"] == 2
        assert owner.service.fleet.relay.relayed == 1


async def test_push_to_a_disconnected_vm_says_so(db_url: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        owner, other = await two_hosts(stack, tmp_path, db_url)
        web = vm_state(owner, "web")
        await poll_until(
            lambda: other.get("/api/v1/vms", host="host-a"),
            lambda body: bool(body["items"]),
        )
        outcome = await relay_config(
            other.service.engine,
            vm_id=web.vm_id,
            config=custom_config(),
            requested_by="host-b",
            timeout_s=2,
        )
        assert (outcome.delivery, outcome.answer) == ("not_connected", None)


async def test_push_to_a_stopped_receivers_vm_fails_fast(
    db_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        owner, other = await two_hosts(stack, tmp_path, db_url)
        vm_id = vm_state(owner, "web").vm_id
        await owner.service.stop()
        with pytest.raises(HostUnavailable):
            await relay_config(
                other.service.engine,
                vm_id=vm_id,
                config=custom_config(),
                requested_by="host-b",
                timeout_s=2,
            )


async def test_config_put_on_any_receiver_reaches_the_vm_on_its_host(
    db_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        owner, other = await two_hosts(stack, tmp_path, db_url)
        web = vm_state(owner, "web")
        guest = AnsweringGuest(await GuestConnection.open(owner.sockets["web"]))
        stack.push_async_callback(guest.connection.close)
        await guest.connection.send(heartbeat())
        await guest.next_request()
        await guest.answer(1)
        await wait_for(lambda: web.counters.config_responses == 1, "first answer")
        await poll_until(
            lambda: other.get("/api/v1/vms", host="host-a"),
            lambda body: body["items"][0]["connected"],
        )

        body = {"execute_config": {"enabled": True, "argv_limit": 333}}
        put = asyncio.create_task(
            other.http.put(other.api_url + "/api/v1/vms/web/config", json=body)
        )
        request = await guest.next_request()
        assert request.execute_config.argv_limit == 333
        await guest.answer(3)
        async with await put as response:
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["delivery"] == "answered"
        assert answer["answer"]["version"] == 3
        # The owner's view of the VM's configuration is the one just set.
        shown = await owner.get("/api/v1/vms/web/config")
        assert shown["config"]["execute_config"]["argv_limit"] == 333
