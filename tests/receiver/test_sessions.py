"""Sessions: heartbeats and health, configuration on connect, VM identity."""

import socket
from pathlib import Path

import pytest

from csm_wire.codec import FrameDecoder, FrameType
from csm_wire.gen import schema_pb2 as pb
from receiver.errors import VmError
from receiver.transports.vsock import VsockListener
from tests.conftest import GuestConnection, make_settings, start_receiver, stop_receiver
from tests.receiver.events import heartbeat
from tests.receiver.helpers import vm_state, wait_for


async def test_vm_turns_unhealthy_after_three_missed_heartbeats(
    tmp_path: Path, sqlite_url: str
) -> None:
    running = await start_receiver(
        make_settings(tmp_path, sqlite_url, ["vm-a"], heartbeat_interval_s=0.2)
    )
    try:
        guest = await GuestConnection.open(running.sockets["vm-a"])
        await guest.send(heartbeat())
        state = vm_state(running, "vm-a")
        await wait_for(lambda: state.counters.heartbeats == 1, "first heartbeat")
        vms = await running.get("/api/v1/vms")
        assert vms["items"][0]["health"] == "healthy"
        assert vms["items"][0]["connected"] is True
        assert vms["items"][0]["protocol"] == "v1"

        await wait_for(lambda: state.unhealthy, "unhealthy after 3 missed beats")
        assert (await running.get("/api/v1/vms"))["items"][0]["health"] == "unhealthy"

        await guest.send(heartbeat())
        await wait_for(lambda: not state.unhealthy, "healthy again")
        await guest.close()
        await wait_for(lambda: not state.sessions, "disconnected")
        vm = (await running.get("/api/v1/vms"))["items"][0]
        assert vm["connected"] is False and vm["health"] == "disconnected"
    finally:
        await stop_receiver(running)


async def test_only_a_type_three_frame_is_sent_to_a_v1_guest(
    tmp_path: Path, sqlite_url: str
) -> None:
    running = await start_receiver(make_settings(tmp_path, sqlite_url, ["vm-a"]))
    try:
        guest = await GuestConnection.open(running.sockets["vm-a"])
        await guest.send(heartbeat() * 3)
        data = await guest.reader.read(4096)
        frames = FrameDecoder(4096).feed(data)
        assert [f.type for f in frames] == [FrameType.CONFIG_REQUEST]
        request = pb.ConfigurationRequest.FromString(frames[0].payload)
        assert request.execute_config.enabled and request.memexec_config.enabled
        assert len(data) <= 4096
        await guest.close()
    finally:
        await stop_receiver(running)


async def test_vsock_listener_names_unknown_cids_and_refuses_host_cids(
    tmp_path: Path, sqlite_url: str
) -> None:
    running = await start_receiver(make_settings(tmp_path, sqlite_url, []))
    service = running.service
    try:
        try:
            listener = VsockListener(
                0, service.registry.resolve_cid, service._start_session
            )
        except VmError as exc:
            pytest.skip(f"AF_VSOCK is not available here: {exc}")
        try:
            vm = await listener.resolve((7, 1234))
            assert vm is not None and vm.name == "cid-7"
            assert await listener.resolve((2, 1234)) is None
            assert await listener.resolve(("forged", 1)) is None
            names = [v["name"] for v in (await running.get("/api/v1/vms"))["items"]]
            assert names == ["cid-7"]
        finally:
            await listener.close()
    finally:
        await stop_receiver(running)


def test_hybrid_listener_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    from receiver.sessions.vm import VmState
    from receiver.settings import VmSpec
    from receiver.transports.hybrid import HybridListener

    (tmp_path / "vm.vsock_4444").write_text("not a socket")
    vm = VmState(1, VmSpec("vm", "hybrid", uds_path=str(tmp_path / "vm.vsock")))

    async def handle(_sock: socket.socket, _vm: VmState) -> None:
        return None

    with pytest.raises(VmError, match="not a socket"):
        HybridListener(vm, str(tmp_path / "vm.vsock"), 4444, handle)
