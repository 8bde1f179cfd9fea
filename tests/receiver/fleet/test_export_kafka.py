"""The Kafka sink against a real Kafka-protocol broker (Tansu): every item
arrives keyed by VM with its headers and body, a VM's order holds, a replay
deduplicates by ``csm-msg-id``, and a missing broker is SinkUnavailable."""

import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select

from bench.tansu import free_port
from receiver.export.errors import SinkUnavailable
from receiver.export.kafka import (
    CLOSE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    PUBLISH_TIMEOUT_S,
    TOPIC_PARTITIONS,
    KafkaSink,
)
from receiver.export.source import STREAMS, ExportItem
from receiver.store.engine import create_engine
from receiver.store.models import events, findings
from tests.conftest import make_settings
from tests.receiver.fleet.conftest import start_broker_or_skip
from tests.receiver.fleet.polling import export_web_pod_in_two_runs

CONSUME_TIMEOUT_S = 30.0
# After the expected count, wait this long for anything extra.
SETTLE_S = 1.0
WINDOW = 100
VMS = (("hv-1", "web"), ("hv-1", "db"), ("hv-2", "web"), ("hv-2", "cache.internal"))


def make_items(count: int) -> list[ExportItem]:
    """``count`` events and findings spread over the VMs, oldest first."""
    items = []
    for n in range(1, count + 1):
        host, vm = VMS[n % len(VMS)]
        stream = "findings" if n % 5 == 0 else "events"
        kind = "reverse_shell" if stream == "findings" else "process_exec"
        prefix = "finding" if stream == "findings" else "event"
        body = {"id": n, "host": host, "vm": vm, "kind": kind, "note": 'ü\n"x"'}
        items.append(ExportItem(n, f"{prefix}-{n}", stream, host, vm, kind, body))
    return items


def unique_prefix() -> str:
    return f"csmtest.{uuid.uuid4().hex[:10]}"


async def publish_in_windows(sink: KafkaSink, items: list[ExportItem]) -> None:
    for start in range(0, len(items), WINDOW):
        await sink.publish(items[start : start + WINDOW])


async def consume(
    bootstrap: str, prefix: str, expected: int
) -> tuple[list[ConsumerRecord[bytes, bytes]], dict[str, int]]:
    """Records of both topics from the earliest offset, in a new group,
    until ``expected`` arrived and nothing more follows; and each topic's
    partition count."""
    consumer = AIOKafkaConsumer(
        *(f"{prefix}.{stream}" for stream in STREAMS),
        bootstrap_servers=bootstrap,
        group_id=f"csm-test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=SETTLE_S * 1000)).values():
            records.extend(batch)
        partitions = {
            stream: len(consumer.partitions_for_topic(f"{prefix}.{stream}") or ())
            for stream in STREAMS
        }
    finally:
        await consumer.stop()
    return records, partitions


def header_map(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def first_copies(
    records: list[ConsumerRecord[bytes, bytes]],
) -> list[ConsumerRecord[bytes, bytes]]:
    """What a consumer keeps when it drops repeated ``csm-msg-id`` values."""
    seen: set[str] = set()
    kept = []
    for record in records:
        msg_id = header_map(record)["csm-msg-id"]
        if msg_id not in seen:
            seen.add(msg_id)
            kept.append(record)
    return kept


def assert_vm_order(records: list[ConsumerRecord[bytes, bytes]]) -> None:
    """Per topic and VM key: one partition, positions only growing."""
    positions: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    partitions: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    for record in records:
        assert record.key is not None
        key = (record.topic, record.key)
        positions[key].append(json.loads(record.value or b"")["id"])
        partitions[key].add(record.partition)
    assert len(positions) == 2 * len(VMS)
    for key, seen in positions.items():
        assert seen == sorted(seen), f"{key} out of order"
        assert len(partitions[key]) == 1, f"{key} spread over partitions"


async def test_every_item_arrives_keyed_with_headers_and_in_vm_order(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()
    items = make_items(300)
    sink = KafkaSink(kafka_bootstrap, prefix)
    assert sink.name == f"kafka:{prefix}"
    await sink.connect()
    try:
        await publish_in_windows(sink, items)
    finally:
        await sink.close()

    records, partitions = await consume(kafka_bootstrap, prefix, len(items))
    assert partitions == dict.fromkeys(STREAMS, TOPIC_PARTITIONS)
    by_id = {item.msg_id: item for item in items}
    assert sorted(header_map(r)["csm-msg-id"] for r in records) == sorted(by_id)
    for record in records:
        headers = header_map(record)
        item = by_id[headers["csm-msg-id"]]
        assert record.topic == f"{prefix}.{item.stream}"
        assert record.key == f"{item.host}/{item.vm}".encode()
        assert record.value == json.dumps(item.body, separators=(",", ":")).encode()
        assert headers == {
            "csm-msg-id": item.msg_id,
            "csm-host": item.host,
            "csm-vm": item.vm,
            "csm-kind": item.kind,
        }
    assert_vm_order(records)


async def test_a_replay_deduplicates_by_message_id(kafka_bootstrap: str) -> None:
    prefix = unique_prefix()
    items = make_items(200)
    # Two sinks, as across a receiver restart; the second finds the topics.
    for _ in range(2):
        sink = KafkaSink(kafka_bootstrap, prefix)
        await sink.connect()
        try:
            await publish_in_windows(sink, items)
        finally:
            await sink.close()

    records, _ = await consume(kafka_bootstrap, prefix, 2 * len(items))
    copies = Counter(header_map(record)["csm-msg-id"] for record in records)
    assert copies == Counter({item.msg_id: 2 for item in items})
    kept = first_copies(records)
    assert len(kept) == len(items)
    assert_vm_order(kept)


async def test_connect_to_a_closed_port_is_unavailable_in_bounded_time() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    sink = KafkaSink(bootstrap, "csm")
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match=f"Kafka at {bootstrap}"):
        await sink.connect()
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + CLOSE_TIMEOUT_S
    await sink.close()


async def test_a_broker_refusing_the_client_is_unavailable(tmp_path: Path) -> None:
    # This broker demands SASL authentication, which the sink does not offer.
    broker = start_broker_or_skip(tmp_path, options=["--authentication"])
    sink = KafkaSink(broker.bootstrap, "csm")
    try:
        with pytest.raises(SinkUnavailable, match=f"Kafka at {broker.bootstrap}"):
            await sink.connect()
    finally:
        await sink.close()
        broker.stop()


async def test_publish_to_a_stopped_broker_is_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    broker = start_broker_or_skip(tmp_path)
    prefix = unique_prefix()
    items = make_items(40)
    sink = KafkaSink(broker.bootstrap, prefix)
    try:
        await sink.connect()
        await sink.publish(items[:20])

        broker.stop()
        started = time.monotonic()
        with pytest.raises(SinkUnavailable, match="Kafka publish"):
            await sink.publish(items[20:])
        assert time.monotonic() - started < PUBLISH_TIMEOUT_S + CLOSE_TIMEOUT_S

        # A broker back on the same port (empty: memory storage) and the
        # next publish reconnects and recreates the topics.
        broker = start_broker_or_skip(tmp_path, broker.port)
        await sink.publish(items[20:])
        records, _ = await consume(broker.bootstrap, prefix, 20)
        ids = sorted(header_map(record)["csm-msg-id"] for record in records)
        assert ids == sorted(item.msg_id for item in items[20:])
    finally:
        await sink.close()
        broker.stop()


async def test_a_receiver_exports_its_journal_to_kafka_across_a_restart(
    kafka_bootstrap: str, db_url: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    settings = make_settings(
        tmp_path,
        db_url,
        ["vm-a", "vm-b"],
        host="host-k",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=prefix,
    )
    await export_web_pod_in_two_runs(settings)

    engine = create_engine(db_url)
    async with engine.connect() as connection:
        stored = (await connection.execute(select(func.count(events.c.id)))).scalar()
        finding_rows = await connection.execute(select(func.count(findings.c.id)))
        stored_findings = finding_rows.scalar()
    await engine.dispose()
    expected = int(stored or 0) + int(stored_findings or 0)
    records, _ = await consume(kafka_bootstrap, prefix, expected)
    kept = first_copies(records)
    assert len(kept) == expected
    topics = Counter(record.topic for record in kept)
    assert topics == {f"{prefix}.events": stored, f"{prefix}.findings": 8}
    record = kept[0]
    assert record.key in (b"host-k/vm-a", b"host-k/vm-b")
    assert header_map(record)["csm-host"] == "host-k"
