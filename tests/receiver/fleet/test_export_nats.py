"""Every stored event and finding reaches JetStream exactly once after
deduplication, also when a restart republishes what was already sent."""

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError
from sqlalchemy import select, update

from receiver.store.engine import create_engine
from receiver.store.models import events, export_cursors, findings
from tests.conftest import (
    RunningReceiver,
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.fleet.conftest import NATS_URL
from tests.receiver.fleet.polling import poll_until
from tests.receiver.helpers import stream_and_store, vm_state


@pytest.fixture
async def jetstream(nats_client: Client) -> AsyncIterator[tuple[str, str]]:
    """A unique stream name and subject prefix, deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"CSM_TEST_{tag}", f"csmtest{tag}"
    try:
        yield stream, prefix
    finally:
        with contextlib.suppress(NotFoundError):
            await nats_client.jetstream().delete_stream(stream)


async def add_findings(running: RunningReceiver, vm: str, count: int) -> None:
    """Findings as detection would store them."""
    state = vm_state(running, vm)
    rows = [
        {
            "vm_id": state.vm_id,
            "boot": 1,
            "uuid": uuid.uuid4().bytes,
            "kind": "reverse_shell",
            "severity": "high",
            "at": time.time_ns(),
            "details": json.dumps({"n": n}),
            "created_at": time.time_ns(),
        }
        for n in range(count)
    ]
    async with running.service.engine.begin() as connection:
        await connection.execute(findings.insert(), rows)
    running.service.fleet.exporter.wake()  # type: ignore[union-attr]


async def stored_ids(running: RunningReceiver) -> set[str]:
    async with running.service.engine.connect() as connection:
        event_ids = (await connection.execute(select(events.c.id))).scalars()
        ids = {f"event-{i}" for i in event_ids}
        finding_ids = (await connection.execute(select(findings.c.id))).scalars()
        return ids | {f"finding-{i}" for i in finding_ids}


async def exported_all(running: RunningReceiver) -> None:
    exporter = running.service.fleet.exporter
    assert exporter is not None

    async def positions() -> tuple[dict[str, int], dict[str, int]]:
        async with running.service.engine.connect() as connection:
            latest = {
                "events": (await connection.execute(select(events.c.id))).scalars(),
                "findings": (await connection.execute(select(findings.c.id))).scalars(),
            }
            newest = {name: max(ids, default=0) for name, ids in latest.items()}
        return newest, dict(exporter.positions)

    await poll_until(positions, lambda pair: pair[0] == pair[1], timeout_s=20)


async def consume_all(client: Client, stream: str, prefix: str) -> list[Any]:
    js = client.jetstream()
    subscription = await js.pull_subscribe(f"{prefix}.>", stream=stream)
    received = []
    while True:
        try:
            batch = await subscription.fetch(500, timeout=1)
        except (NatsTimeout, TimeoutError):
            break
        for message in batch:
            await message.ack()
        received.extend(batch)
    await subscription.unsubscribe()
    return received


async def test_every_event_and_finding_once_across_a_restart(
    db_url: str,
    tmp_path: Path,
    nats_client: Client,
    jetstream: tuple[str, str],
) -> None:
    stream, prefix = jetstream
    settings = make_settings(
        tmp_path,
        db_url,
        ["vm-a", "vm-b"],
        host="host-x",
        nats_url=NATS_URL,
        nats_stream=stream,
        nats_subject=prefix,
    )
    web_pod = read_vector("web-pod.bin")

    first = await start_receiver(settings)
    try:
        await stream_and_store(first, "vm-a", web_pod)
        await add_findings(first, "vm-a", 3)
        await exported_all(first)
    finally:
        await stop_receiver(first)

    # As if the receiver had died after publishing but before saving its
    # cursors: the next one republishes everything.
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(update(export_cursors).values(position=0))
    await engine.dispose()

    second = await start_receiver(settings)
    try:
        await stream_and_store(second, "vm-b", web_pod)
        await add_findings(second, "vm-b", 2)
        await exported_all(second)
        expected = await stored_ids(second)
        published = second.service.fleet.exporter.published  # type: ignore[union-attr]
        # It did publish the first run's messages again.
        assert sum(published.values()) == len(expected)
    finally:
        await stop_receiver(second)

    received = await consume_all(nats_client, stream, prefix)
    ids = [message.headers["Nats-Msg-Id"] for message in received]
    assert len(ids) == len(set(ids)), "a message arrived twice"
    assert set(ids) == expected
    # Detection's findings of the web pod, and the five added here.
    assert sum(i.startswith("finding-") for i in ids) > 5

    sample = next(m for m in received if m.headers["Nats-Msg-Id"].startswith("event"))
    body = json.loads(sample.data)
    assert body["host"] == "host-x" and body["vm"] in {"vm-a", "vm-b"}
    assert sample.subject.startswith(f"{prefix}.events.host-x.")
    info = await nats_client.jetstream().stream_info(stream)
    assert info.state.messages == len(expected)
