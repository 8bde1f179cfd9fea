"""The host's half of protocol v2 on one connection that opened with a hello.

Sequenced events are journaled, deduplicated by (vm, boot, seq) and
acknowledged once durable; loss reports and unexplained sequence jumps become
gaps; counters are kept for the API; configuration carries a generation.
A session creates a link only after the guest's first frame was a hello, so
a v1 guest never receives any of these frames.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict

from csm_wire.gen import csm_v2_pb2 as v2pb
from csm_wire.gen import schema_pb2 as pb
from csm_wire.v2 import (
    CAPABILITIES,
    PROTOCOL_VERSION,
    CountersMessage,
    GenerationResponseMessage,
    HelloMessage,
    LossReportMessage,
    SequencedEventMessage,
    encode_ack,
    encode_config_request_v2,
    encode_hello,
)
from receiver.ingest.records import RecordError, record_event
from receiver.sessions.accounting import GapCause
from receiver.sessions.counters import DropCause
from receiver.sessions.delivery import BootMarks, Delivery

if TYPE_CHECKING:
    from receiver.sessions.session import GuestSession

log = logging.getLogger(__name__)

RECEIVER_VERSION = "csm-receiver 0.1.0"


class V2Link:
    """Sequencing, acknowledgements, gaps and generations for one session."""

    def __init__(self, session: "GuestSession", delivery: Delivery) -> None:
        self.session = session
        self.delivery = delivery
        self.vm = session.vm
        self.boot = 0
        self.marks = BootMarks()
        self.acked = 0
        self._hello_due = False
        self._generation = 0
        self._answers: dict[int, asyncio.Future[dict[str, Any]] | None] = {}

    def start(self, message: HelloMessage) -> bool:
        """Take the guest's hello; False if it cannot start a v2 stream."""
        hello = message.hello
        if hello.machine_id == 0:
            self.vm.warn(log, "hello", "closing: hello without a machine id")
            return False
        self.boot = hello.machine_id
        self.marks = self.delivery.marks_for(self.vm.vm_id, self.boot)
        self.vm.protocol = "v2"
        self.vm.delivery.hello = MessageToDict(
            hello, preserving_proto_field_name=True
        ) | {"machine_id": f"{hello.machine_id:08x}"}
        self.delivery.v2_sessions.add(self.session)
        log.info(
            "vm %s: v2 guest %r, boot %08x, resuming after sequence %d",
            self.vm.name,
            hello.software_version,
            self.boot,
            self.marks.accepted,
        )
        if self.marks.accepted > self.marks.durable:
            # The guest may forget what we acknowledge: only what is synced.
            self._hello_due = True
            self.delivery.wake()
        else:
            self._send_hello()
        return True

    def _send_hello(self) -> None:
        self._hello_due = False
        self.acked = self.marks.durable
        reply = v2pb.Hello(
            protocol_version=PROTOCOL_VERSION,
            software_version=RECEIVER_VERSION,
            capabilities=list(CAPABILITIES),
            acked_seq=self.marks.durable,
        )
        self.session.write(encode_hello(reply))

    def on_durable(self, durable_lsn: int) -> None:
        """The journal is synced up to ``durable_lsn``: acknowledge."""
        if self.session.closed:
            return
        if self._hello_due:
            self._send_hello()
            return
        if self.marks.durable > self.acked:
            self.acked = self.marks.durable
            self.session.write(encode_ack(self.boot, self.acked))

    def dispatch(self, message: object, received_at: int) -> bool:
        """Handle a v2-only message; False if it is not one."""
        if isinstance(message, SequencedEventMessage):
            self._accept_event(message, received_at)
        elif isinstance(message, LossReportMessage):
            self._accept_loss(message)
        elif isinstance(message, CountersMessage):
            self.vm.delivery.guest_counters = MessageToDict(
                message.counters, preserving_proto_field_name=True
            ) | {"received_at": time.time()}
        elif isinstance(message, GenerationResponseMessage):
            self._accept_answer(message)
        elif isinstance(message, HelloMessage):
            self.vm.counters.decode_errors += 1
            self.vm.warn(log, "hello", "skipped a second hello")
        else:
            return False
        return True

    def _explain_jump(self, first_seq: int) -> None:
        expected = self.marks.accepted + 1
        if first_seq > expected:
            self.delivery.record_gap(
                self.vm,
                self.boot,
                GapCause.SEQUENCE_GAP,
                first_seq=expected,
                last_seq=first_seq - 1,
                count=first_seq - expected,
            )

    def _advance(self, seq: int, lsn: int) -> None:
        self.marks.accepted = seq
        self.marks.accepted_lsn = lsn
        self.delivery.wake()

    def _duplicate(self) -> None:
        self.vm.delivery.duplicates += 1
        # The guest still waits for an acknowledgement of it.
        self.delivery.wake()

    def _accept_event(self, message: SequencedEventMessage, received_at: int) -> None:
        seq = message.seq
        if seq <= self.marks.accepted:
            self._duplicate()
            return
        self._explain_jump(seq)
        counters = self.vm.counters
        counters.events += 1
        event = message.event
        try:
            record = record_event(self.vm.vm_id, event.event, self.session.boot)
        except RecordError as exc:
            counters.drops[DropCause.UNUSABLE_EVENT] += 1
            self.vm.warn(log, "record", "event %d dropped: %s", seq, exc)
            self._advance(seq, self.delivery.journal.written_lsn)
            return
        refused = self.vm.identities.admit(record)
        if refused is not None:
            counters.drops[refused] += 1
            self.vm.warn(log, str(refused), "event dropped: %s reached", refused)
            self._advance(seq, self.delivery.journal.written_lsn)
            return
        lsn = self.delivery.accept_event(
            self.vm, record, message.payload, received_at, seq=seq, boot=self.boot
        )
        if lsn is None:
            self._refuse()
            return
        self.session.boot = record.boot
        self._advance(seq, lsn)

    def _accept_loss(self, message: LossReportMessage) -> None:
        report = message.report
        if report.last_seq <= self.marks.accepted:
            self._duplicate()
            return
        self._explain_jump(report.first_seq)
        first = max(report.first_seq, self.marks.accepted + 1)
        lsn = self.delivery.record_gap(
            self.vm,
            self.boot,
            GapCause.GUEST_OVERFLOW,
            first_seq=first,
            last_seq=report.last_seq,
            count=report.last_seq - first + 1,
            started_at=report.first_timestamp or None,
            ended_at=report.last_timestamp or None,
            details={"guest_cause": message.cause},
        )
        if lsn is None:
            self._refuse()
            return
        self._advance(report.last_seq, lsn)

    def _refuse(self) -> None:
        # The host is full: close unacknowledged, so the guest keeps the
        # events and replays them when it reconnects.
        self.vm.delivery.refused += 1
        self.vm.warn(log, "refused", "host full: closing a v2 connection to replay")
        self.session.refuse()

    def push_config(
        self,
        config: pb.ConfigurationRequest,
        answer: asyncio.Future[dict[str, Any]] | None,
        generation: int | None = None,
    ) -> int:
        """Send ``config`` as a generation; return the generation number."""
        if generation is None:
            self._generation += 1
            generation = self._generation
        else:
            self._generation = max(self._generation, generation)
        self._answers[generation] = answer
        self.session.write(encode_config_request_v2(generation, config))
        return generation

    def _accept_answer(self, message: GenerationResponseMessage) -> None:
        if message.generation not in self._answers:
            self.vm.warn(
                log, "generation", "answer to unknown generation %d", message.generation
            )
            return
        waiter = self._answers.pop(message.generation)
        self.session.config_answered(message.response, waiter, message.generation)

    def closed(self) -> None:
        """The connection ended."""
        self.delivery.v2_sessions.discard(self.session)
        for waiter in self._answers.values():
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("guest disconnected"))
        self._answers.clear()
