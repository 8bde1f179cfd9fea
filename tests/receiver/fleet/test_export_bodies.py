"""Export bodies fit the engine's largest message: an event too large keeps
its fields and loses its payload, visibly, and NATS delivers it."""

import asyncio
import base64
import contextlib
import json
import uuid

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from receiver.export.errors import SinkUnavailable
from receiver.export.nats import CONNECT_TIMEOUT_S, NatsSink
from receiver.export.source import ExportItem, ExportSource, encode_body
from receiver.ingest.journal import JournalRecord, RecordKind
from tests.receiver.fleet.conftest import NATS_URL


def event_item(payload_bytes: int) -> ExportItem:
    payload = base64.b64encode(bytes(payload_bytes)).decode()
    body = {"host": "h", "vm": "v", "kind": "execute", "boot": "01", "payload": payload}
    return ExportItem(1, "event:j:1", "events", "h", "v", "execute", body)


def test_a_body_that_fits_is_kept_whole() -> None:
    item = event_item(100)
    body, cut = encode_body(item, 1 << 20)
    assert not cut and json.loads(body) == item.body


def test_a_large_event_loses_only_its_payload() -> None:
    body, cut = encode_body(event_item(10_000), 2_000)
    fields = json.loads(body)
    assert cut and len(body) <= 2_000
    assert fields["payload"] is None and fields["payload_omitted_bytes"] > 10_000
    assert fields["kind"] == "execute" and fields["vm"] == "v"


def test_a_body_too_large_without_payload_keeps_its_ids() -> None:
    details = {"host": "h", "vm": "v", "kind": "rule", "details": "x" * 5_000}
    item = ExportItem(2, "finding:x", "findings", "h", "v", "rule", details)
    body, cut = encode_body(item, 1_000)
    assert cut and json.loads(body)["kind"] == "rule" and len(body) < 1_000


async def test_nats_delivers_an_oversized_event_without_its_payload(
    nats_client: Client,
) -> None:
    tag = uuid.uuid4().hex[:10]
    sink = NatsSink(NATS_URL, f"CSM_TEST_{tag}", f"csmtest{tag}")
    await sink.connect()
    try:
        # Base64 of 900 KiB is larger than the server's 1 MiB message limit.
        await sink.publish([event_item(900 << 10)])
        js = nats_client.jetstream()
        message = await js.get_last_msg(f"CSM_TEST_{tag}", f"csmtest{tag}.>")
        assert message.data is not None
        fields = json.loads(message.data)
        assert fields["payload"] is None and fields["kind"] == "execute"
        assert sink.oversized == 1
    finally:
        await sink.close()
        with contextlib.suppress(NotFoundError):
            await nats_client.jetstream().delete_stream(f"CSM_TEST_{tag}")


def test_records_that_cannot_be_exported_are_counted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ExportSource("j", "h", lambda vm_id: f"vm-{vm_id}")
    garbage = JournalRecord(5, RecordKind.EVENT, 1, payload=b"\xff\x00 not protobuf")
    assert source.item(garbage) is None
    assert source.unusable == 1

    def no_name(vm_id: int) -> str:
        raise LookupError(vm_id)

    broken = ExportSource("j", "h", no_name)
    gap = JournalRecord(6, RecordKind.GAP, 1, gap={"cause": "v1_reconnect"})
    assert broken.item(gap) is None
    assert broken.unusable == 1
    assert "journal record 6 cannot be exported" in caplog.text


def test_a_finding_is_named_by_its_process_and_kind() -> None:
    source = ExportSource("j", "h", lambda vm_id: "web")
    finding = {"kind": "reverse_shell", "boot": "0000abcd", "process_uuid": "ff"}
    item = source.item(JournalRecord(9, RecordKind.FINDING, 3, gap=finding))
    assert item is not None
    assert item.msg_id == "finding:h:3:0000abcd:ff:reverse_shell"
    assert (item.stream, item.vm, item.body["host"]) == ("findings", "web", "h")


async def test_a_refused_nats_connection_fails_at_once_not_after_the_timeout() -> None:
    sink = NatsSink("nats://127.0.0.1:9", "CSM_UNUSED", "csmunused")
    # Well inside CONNECT_TIMEOUT_S: the refusal itself ends the attempt.
    with pytest.raises(SinkUnavailable, match=r"127\.0\.0\.1:9"):
        await asyncio.wait_for(sink.connect(), CONNECT_TIMEOUT_S / 2)
