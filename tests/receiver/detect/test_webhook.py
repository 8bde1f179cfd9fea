"""The webhook gets each finding once: in order, retried while the endpoint
is down, bounded while it waits, and never re-sent for a duplicate."""

import json
import socket
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from receiver.detect.outputs import WebhookSink
from tests.conftest import (
    VECTORS,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.helpers import stream_and_store, wait_for

EXPECTED = json.loads((VECTORS / "web-pod.expected.json").read_text())["findings"]


class WebhookEndpoint:
    """An HTTP server on loopback that records what it accepts."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.attempts = 0
        self.answers = deque(answers or [])
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        status = self.answers.popleft() if self.answers else 200
        if status == 200:
            self.accepted.append(body)
        return web.Response(status=status)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _kinds(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["process_uuid"]) for f in findings)


def _expected() -> list[tuple[str, str]]:
    return sorted((f["kind"], f["process"]) for f in EXPECTED)


@pytest.mark.parametrize("down_first", [False, True], ids=["up", "down-for-a-while"])
async def test_the_webhook_receives_each_finding_once(
    sqlite_url: str, tmp_path: Path, down_first: bool
) -> None:
    port = free_port()
    endpoint = WebhookEndpoint()
    if not down_first:
        await endpoint.start(port)
    settings = make_settings(
        tmp_path,
        sqlite_url,
        ["vm-a"],
        webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_retry_max_s=0.05,
    )
    running = await start_receiver(settings)
    webhook = running.service.detector.webhook
    assert webhook is not None
    try:
        data = read_vector("web-pod.bin")
        await stream_and_store(running, "vm-a", data)
        if down_first:
            await wait_for(lambda: webhook.failures >= 5, "attempts while down")
            await endpoint.start(port)
        await wait_for(lambda: webhook.delivered == len(EXPECTED), "delivered")

        # The same stream again finds nothing new, so nothing is sent.
        await stream_and_store(running, "vm-a", data)
        assert webhook.pending == 0 and webhook.delivered == len(EXPECTED)
    finally:
        await stop_receiver(running)
        await endpoint.stop()
    assert _kinds(endpoint.accepted) == _expected()
    assert len({f["id"] for f in endpoint.accepted}) == len(EXPECTED)
    assert endpoint.attempts == len(EXPECTED)
    assert webhook.dropped == 0 and webhook.refused == 0
    assert (webhook.failures > 0) is down_first


async def test_server_errors_are_retried_and_refusals_are_not() -> None:
    endpoint = WebhookEndpoint(answers=[503, 500, 200, 400, 429, 200])
    port = free_port()
    await endpoint.start(port)
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", retry_max_s=0.01)
    sink.start()
    try:
        for n in range(3):
            sink.offer({"n": n})
        await wait_for(lambda: sink.pending == 0, "queue drained")
    finally:
        await sink.close(grace_s=5)
        await endpoint.stop()
    # 0 after two failures; 1 refused with 400; 2 after one 429.
    assert [body["n"] for body in endpoint.accepted] == [0, 2]
    assert (sink.delivered, sink.failures, sink.refused) == (2, 3, 1)


async def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    port = free_port()
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", capacity=2)
    for n in range(5):
        sink.offer({"n": n})
    assert (sink.pending, sink.dropped) == (2, 3)

    endpoint = WebhookEndpoint()
    await endpoint.start(port)
    sink.start()
    try:
        await wait_for(lambda: sink.delivered == 2, "delivered")
    finally:
        await sink.close(grace_s=5)
        await endpoint.stop()
    assert [body["n"] for body in endpoint.accepted] == [3, 4]


async def test_shutdown_gives_up_on_an_unreachable_webhook() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", retry_max_s=0.01)
    sink.start()
    sink.offer({"n": 1})
    await wait_for(lambda: sink.failures >= 1, "a failed attempt")
    await sink.close(grace_s=5)
    assert sink.pending == 1 and sink.delivered == 0
