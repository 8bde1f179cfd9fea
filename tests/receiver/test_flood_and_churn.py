"""Floods, churn and guest-sent requests: the receiver stays up, its memory
stays flat, and a good VM's data is complete."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from csm_wire.codec import FrameType
from csm_wire.gen import schema_pb2 as pb
from tests.conftest import GuestConnection, RunningReceiver, read_vector
from tests.receiver.events import BASE_NS, execute, heartbeat, make_uuid, raw_frame
from tests.receiver.helpers import stream_and_store, vm_state, wait_for
from tests.receiver.test_web_pod_vector import assert_web_pod_state

FLOOD_EVENTS = 20_000
ROUNDS = 5
# Growth allowed between the first and the last flood round: allocator
# noise, not a per-event leak (a leak of even 100 bytes an event would
# exceed it).
FLAT_MEMORY_SLACK_BYTES = 6 * 1024 * 1024


async def test_guest_sent_configuration_request_is_refused_and_counted(
    receiver: RunningReceiver,
) -> None:
    request = pb.ConfigurationRequest(
        execute_config=pb.ExecuteCollectorConfig(enabled=False)
    ).SerializeToString()
    await stream_and_store(
        receiver, "vm-a", heartbeat() + raw_frame(FrameType.CONFIG_REQUEST, request)
    )
    assert vm_state(receiver, "vm-a").counters.unknown_frame_types == 1


async def test_connection_churn_leaves_no_session_behind(
    receiver: RunningReceiver,
) -> None:
    state = vm_state(receiver, "vm-a")
    for _ in range(200):
        guest = await GuestConnection.open(receiver.sockets["vm-a"])
        await guest.send(heartbeat())
        await guest.close()
    await wait_for(lambda: state.counters.connections == 200, "all accepted")
    await wait_for(lambda: not state.sessions, "all sessions closed")
    await stream_and_store(receiver, "vm-b", read_vector("web-pod.bin"))
    await assert_web_pod_state(receiver, "vm-b")


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(match[1]) * 1024


def _flood(round_number: int) -> bytes:
    machine = 0x0F100D00 + round_number
    return heartbeat() + b"".join(
        execute(
            make_uuid(machine, BASE_NS + n, 1000 + n),
            None,
            "/usr/bin/flood",
            ["flood", str(n), "x" * 200],
            BASE_NS + n,
        )
        for n in range(FLOOD_EVENTS)
    )


def _start_receiver(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "serve",
            "--no-vsock",
            "--api",
            "127.0.0.1:0",
            "--api-token",
            "t",
            "--data-dir",
            str(tmp_path / "var"),
            "--vm",
            f"bad=hybrid:{tmp_path / 'bad'}",
            "--vm",
            f"good=hybrid:{tmp_path / 'good'}",
            "--ingest-queue-events",
            "5000",
            # Each round is a new boot: allow the rounds, cap the rest.
            "--max-boots-per-vm",
            str(ROUNDS + 1),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        match = re.search(r"API and dashboard on http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return process, int(match[1])
    process.kill()
    pytest.fail("receiver did not start")


async def _counters(port: int, vm: str) -> dict:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.get(f"http://127.0.0.1:{port}/api/v1/vms/{vm}") as response:
            return (await response.json())["counters"]


async def _queue_depth(port: int) -> float:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    match = re.search(r"^csm_ingest_queue_depth ([0-9.e+]+)$", text, re.MULTILINE)
    assert match
    return float(match[1])


async def _send(path: Path, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
        guest.setblocking(False)
        await asyncio.get_running_loop().sock_connect(guest, os.fspath(path))
        await asyncio.get_running_loop().sock_sendall(guest, data)


async def test_flood_keeps_memory_flat_and_the_good_vm_complete(tmp_path: Path) -> None:
    process, port = _start_receiver(tmp_path)
    try:
        samples = []
        for round_number in range(ROUNDS):
            await _send(tmp_path / "bad_4444", _flood(round_number))
            expected = (round_number + 1) * FLOOD_EVENTS
            deadline = time.monotonic() + 120
            while (await _counters(port, "bad"))["events"] < expected:
                assert time.monotonic() < deadline, "flood not read"
                await asyncio.sleep(0.2)
            while await _queue_depth(port) > 0:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            samples.append(_rss_bytes(process.pid))
        await _send(tmp_path / "good_4444", read_vector("web-pod.bin"))
        await asyncio.sleep(1.0)
        bad = await _counters(port, "bad")
        print(
            "receiver RSS after each flood round (MiB):",
            [round(s / 2**20, 1) for s in samples],
            "drops:",
            bad["drops"],
        )
        # The first round warms caches and pools; after it memory is flat.
        assert max(samples[1:]) - samples[1] < FLAT_MEMORY_SLACK_BYTES
        assert process.poll() is None, "the receiver must stay up"
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
            url = f"http://127.0.0.1:{port}/api/v1/vms/good/processes"
            async with http.get(url) as response:
                good = (await response.json())["items"]
        assert len(good) == 8
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
