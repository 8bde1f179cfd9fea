"""What the exporter publishes: journal records turned into messages.

Every message has an id that stays the same however often it is published:
an event or a gap is named by the journal and its LSN, a finding by its
process and kind (one finding per process and kind), so a finding journaled
again after a crash carries the id it had.
"""

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from csm_wire.messages import usable_event
from receiver.ingest.journal import JournalRecord, RecordKind
from receiver.ingest.records import RecordError, record_event

log = logging.getLogger(__name__)

STREAMS = ("events", "gaps", "findings")

VmNames = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One message to publish: its dedupe id, subject parts and body."""

    position: int
    msg_id: str
    stream: str  # one of STREAMS
    host: str
    vm: str
    kind: str
    body: dict[str, Any]


class ExportSource:
    """Turns the journal records of one host into export items."""

    def __init__(self, journal_id: str, host: str, vm_name: VmNames) -> None:
        self.journal_id = journal_id
        self.host = host
        self.vm_name = vm_name
        # Event records whose payload no longer parses (not exported).
        self.unusable = 0

    def item(self, record: JournalRecord) -> ExportItem | None:
        """The message for ``record``; None if it carries nothing to export
        (counted in ``unusable``: a record must never stop the export)."""
        try:
            return self._item(record)
        except Exception:
            self.unusable += 1
            log.exception("journal record %d cannot be exported", record.lsn)
            return None

    def _item(self, record: JournalRecord) -> ExportItem | None:
        vm = self.vm_name(record.vm_id)
        if record.kind is RecordKind.EVENT:
            return self._event(record, vm)
        assert record.gap is not None
        if record.kind is RecordKind.GAP:
            cause = str(record.gap.get("cause", "unknown"))
            body = {"host": self.host, "vm": vm, **record.gap}
            msg_id = f"gap:{self.journal_id}:{record.lsn}"
            return ExportItem(record.lsn, msg_id, "gaps", self.host, vm, cause, body)
        finding = record.gap
        kind = str(finding.get("kind", "unknown"))
        key = ":".join(
            str(part)
            for part in (record.vm_id, finding.get("boot"), finding.get("process_uuid"))
        )
        body = {**finding, "host": self.host, "vm": vm}
        msg_id = f"finding:{self.host}:{key}:{kind}"
        return ExportItem(record.lsn, msg_id, "findings", self.host, vm, kind, body)

    def _event(self, record: JournalRecord, vm: str) -> ExportItem | None:
        event = usable_event(record.payload)
        if event is None:
            self.unusable += 1
            return None
        try:
            parsed = record_event(record.vm_id, event, record.boot)
        except RecordError:
            self.unusable += 1
            return None
        body = {
            "host": self.host,
            "vm": vm,
            "boot": f"{parsed.boot:08x}",
            "kind": parsed.kind,
            "at": parsed.at,
            "received_at": record.received_at,
            "uuid": parsed.uuid.hex() if parsed.uuid is not None else None,
            "seq": record.seq or None,
            "payload": base64.b64encode(record.payload).decode("ascii"),
        }
        msg_id = f"event:{self.journal_id}:{record.lsn}"
        return ExportItem(
            record.lsn, msg_id, "events", self.host, vm, parsed.kind, body
        )


def encode_body(item: ExportItem, limit: int) -> tuple[bytes, bool]:
    """``item``'s body as compact JSON of at most ``limit`` bytes, and
    whether something had to be left out to fit: first an event's payload
    (its size and the other fields stay), then everything but the ids."""
    body = json.dumps(item.body, separators=(",", ":")).encode()
    if len(body) <= limit:
        return body, False
    fields = dict(item.body)
    if "payload" in fields:
        fields["payload"] = None
        fields["payload_omitted_bytes"] = len(body)
        body = json.dumps(fields, separators=(",", ":")).encode()
        if len(body) <= limit:
            return body, True
    kept = {key: item.body.get(key) for key in ("host", "vm", "kind", "boot")}
    kept["omitted_bytes"] = len(body)
    return json.dumps(kept, separators=(",", ":")).encode(), True
