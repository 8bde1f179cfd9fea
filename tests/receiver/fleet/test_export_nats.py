"""Every event, gap and finding reaches JetStream exactly once after
deduplication: across a restart, across a SIGKILL mid-stream, and after the
stream engine was down for a whole run."""

import base64
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError
from sqlalchemy import delete, func, select

from csm_wire.gen import schema_pb2 as pb
from receiver.ingest.journal import PROCESSED_FILE
from receiver.store.engine import create_engine
from receiver.store.models import events, findings, vms
from tests.conftest import (
    make_settings,
    read_vector,
    start_receiver,
    stop_receiver,
)
from tests.receiver.fleet.conftest import NATS_URL
from tests.receiver.fleet.polling import export_web_pod_in_two_runs, exported_all
from tests.receiver.helpers import stream_and_store, wait_for
from tests.receiver.test_crash_and_outage import (
    ReceiverProcess,
    stream_through_a_sigkill,
)

# Findings a crash kept from the store, in the sink-down test.
LOST_KINDS = ("reverse_shell", "exec_session_started")
# Nothing listens here: the exporter cannot reach its sink.
UNREACHABLE_NATS = "nats://127.0.0.1:9"


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


async def consume_all(client: Client, stream: str, prefix: str) -> list[Msg]:
    js = client.jetstream()
    subscription = await js.pull_subscribe(f"{prefix}.>", stream=stream)
    received: list[Msg] = []
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


async def stored(db_url: str) -> tuple[int, set[str]]:
    """Events stored, and the message ids of the stored findings."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            count = (await connection.execute(select(func.count(events.c.id)))).scalar()
            rows = (
                await connection.execute(
                    select(vms.c.host, findings).join(vms, vms.c.id == findings.c.vm_id)
                )
            ).all()
    finally:
        await engine.dispose()
    ids = {
        f"finding:{r.host}:{r.vm_id}:{r.boot:08x}:{r.uuid.hex()}:{r.kind}" for r in rows
    }
    return int(count or 0), ids


def by_stream(received: list[Msg]) -> Counter[str]:
    return Counter(m.headers["Nats-Msg-Id"].split(":", 1)[0] for m in received)


def finding_ids(received: list[Msg]) -> set[str]:
    ids = (m.headers["Nats-Msg-Id"] for m in received)
    return {i for i in ids if i.startswith("finding:")}


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
    await export_web_pod_in_two_runs(settings)

    received = await consume_all(nats_client, stream, prefix)
    ids = [message.headers["Nats-Msg-Id"] for message in received]
    assert len(ids) == len(set(ids)), "a message arrived twice"
    event_count, expected_findings = await stored(db_url)
    assert by_stream(received)["event"] == event_count
    # The web pod's four findings, once for each VM.
    assert finding_ids(received) == expected_findings
    assert len(expected_findings) == 8

    event = next(m for m in received if m.headers["Nats-Msg-Id"].startswith("event"))
    body = json.loads(event.data)
    assert body["host"] == "host-x" and body["vm"] in {"vm-a", "vm-b"}
    assert event.subject == f"{prefix}.events.host-x.{body['vm']}.{body['kind']}"
    decoded = pb.Event.FromString(base64.b64decode(body["payload"]))
    assert decoded.WhichOneof("event") == body["kind"]
    finding = next(m for m in received if m.headers["Nats-Msg-Id"].startswith("find"))
    details = json.loads(finding.data)
    assert details["id"] is not None and details["severity"] in {
        "info",
        "high",
        "critical",
    }
    assert finding.subject.startswith(f"{prefix}.findings.host-x.")
    info = await nats_client.jetstream().stream_info(stream)
    assert info.state.messages == len(ids)


async def test_a_sink_down_for_a_run_gets_it_all_later(
    db_url: str,
    tmp_path: Path,
    nats_client: Client,
    jetstream: tuple[str, str],
) -> None:
    """The journal keeps what is not exported, and findings lost by a crash
    between storing a batch and evaluating it are found again."""
    stream, prefix = jetstream
    options: dict[str, Any] = {"nats_stream": stream, "nats_subject": prefix}
    down = make_settings(
        tmp_path, db_url, ["vm-a"], nats_url=UNREACHABLE_NATS, **options
    )
    running = await start_receiver(down)
    try:
        await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
        (exporter,) = running.service.fleet.exporters
        await wait_for(lambda: exporter.failures > 0, "export failed", 20)
        assert exporter.reader.lag > 0
        async with running.http.get(running.api_url + "/metrics") as response:
            metrics = await response.text()
        sink = 'sink="nats:' + stream + '"'
        assert f"csm_export_failures_total{{{sink}}}" in metrics
        lag = next(x for x in metrics.splitlines() if x.startswith("csm_export_lag"))
        assert float(lag.split()[-1]) > 0
    finally:
        await stop_receiver(running)
    event_count, expected_findings = await stored(db_url)
    assert len(expected_findings) == 4

    # As if that run had died after storing its batches, while detection
    # had stored some of their findings and journaled none.
    (down.data_dir / "journal" / PROCESSED_FILE).write_text("1\n")
    engine = create_engine(db_url)
    async with engine.begin() as connection:
        await connection.execute(
            delete(findings).where(findings.c.kind.in_(LOST_KINDS))
        )
    await engine.dispose()

    up = make_settings(tmp_path, db_url, ["vm-a"], nats_url=NATS_URL, **options)
    running = await start_receiver(up)
    try:
        await exported_all(running)
    finally:
        await stop_receiver(running)

    assert await stored(db_url) == (event_count, expected_findings)
    received = await consume_all(nats_client, stream, prefix)
    assert by_stream(received)["event"] == event_count
    assert finding_ids(received) == expected_findings
    ids = [message.headers["Nats-Msg-Id"] for message in received]
    assert len(ids) == len(set(ids))
    # Found again or stored before, every finding is exported with its id.
    exported = [json.loads(m.data) for m in received if m.subject.count(".findings.")]
    assert len(exported) == 4 and all(body["id"] for body in exported)


async def test_sigkill_mid_stream_exports_every_event_once(
    db_url: str,
    tmp_path: Path,
    nats_client: Client,
    jetstream: tuple[str, str],
) -> None:
    stream, prefix = jetstream
    names = [f"vm-{i}" for i in range(3)]
    nats = ("--nats-url", NATS_URL, "--nats-stream", stream, "--nats-subject", prefix)
    receiver = ReceiverProcess(tmp_path, db_url, names, *nats)
    try:
        guests = await stream_through_a_sigkill(receiver, 1500)
    finally:
        receiver.ensure_stopped()

    received = await consume_all(nats_client, stream, prefix)
    ids = [message.headers["Nats-Msg-Id"] for message in received]
    assert len(ids) == len(set(ids)), "JetStream let a duplicate through"
    sequences = Counter(
        (body["vm"], body["seq"])
        for body in (json.loads(m.data) for m in received)
        if body.get("seq")
    )
    assert max(sequences.values()) == 1, "an event was exported twice"
    for index, guest in enumerate(guests):
        produced = guest.stream.next_seq - 1
        exported = {seq for vm, seq in sequences if vm == f"vm-{index}"}
        assert exported == set(range(1, produced + 1))
    event_count, _ = await stored(db_url)
    assert by_stream(received)["event"] == event_count
