"""The agent: kernel events in, CSM frames out, configuration applied.

Data flows one way: an event source (BPF or the proc connector) calls
``Agent.handle`` with backend-neutral events; the agent updates the process
table, encodes what the configuration asks for and hands the events to the
v2 stream (sequence numbers and a bounded replay buffer), or, speaking plain
v1, puts frames in the bounded outbox. The host link drains either.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from csm_wire.codec import FrameType, encode_frame
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response
from csm_wire.v2_guest import GuestStream, LossCause
from guest_lsm.config import CollectorConfig, Protocol, Settings
from guest_lsm.encode import events as enc
from guest_lsm.enrich import procfs
from guest_lsm.enrich.containers import BundleIndex, ContainerMetadata
from guest_lsm.enrich.identity import Identity
from guest_lsm.enrich.processes import NewContainer, ProcessState, ProcessTable
from guest_lsm.errors import ConfigError
from guest_lsm.raw import (
    FileRef,
    RawEvent,
    RawExec,
    RawExit,
    RawFork,
    RawMemexec,
    RawWrite,
)
from guest_lsm.stats import Counters, DropCause
from guest_lsm.transport.outbox import Outbox

logger = logging.getLogger(__name__)

CSM_VERSION = 1
MAX_CONTAINERS = 65536
SOFTWARE_VERSION = "csm-guest 0.2.0"


@dataclass(slots=True)
class ContainerRecord:
    """A container id with what is known about it."""

    container_id: int
    creation_ns: int
    init_uuid: bytes
    metadata: ContainerMetadata | None = None


class Agent:
    """Turns kernel events into frames according to the current configuration."""

    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        config: CollectorConfig,
        counters: Counters | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.config = config
        self.counters = counters or Counters()
        self.table = ProcessTable(identity)
        self.outbox = Outbox(settings.queue_frames, self.counters)
        self.bundles = BundleIndex(settings.bundle_roots or BundleIndex().roots)
        self.containers: dict[int, ContainerRecord] = {}
        self.sinks: list[Any] = []
        self.notify_host: Any = None
        self.stream = self._open_stream(settings, identity)
        # Called after each event given to the stream, so the link sends it.
        self.wake_host: Callable[[], None] = _nothing

    @staticmethod
    def _open_stream(settings: Settings, identity: Identity) -> GuestStream | None:
        if settings.protocol is Protocol.V1:
            return None
        return GuestStream(
            identity.machine_id,
            software_version=SOFTWARE_VERSION,
            kernel_version=procfs.kernel_version_code(),
            replay_capacity_events=settings.replay_events,
            replay_capacity_bytes=settings.replay_bytes,
            heartbeat_interval_s=settings.heartbeat_s,
            counters_interval_s=settings.counters_s,
            hello_timeout_s=(
                settings.hello_timeout_s
                if settings.protocol is Protocol.AUTO
                else float("inf")
            ),
        )

    # ---- output -------------------------------------------------------

    def _emit(self, event: pb.Event) -> None:
        try:
            payload = event.SerializeToString()
        except Exception:
            self.counters.proto_encoding_failed += 1
            logger.exception("encoding an event failed")
            self.note_lost(1, LossCause.ENCODING_FAILED)
            return
        self.counters.events_encoded += 1
        frame = encode_frame(FrameType.EVENT, payload)
        if self.stream is not None:
            self.stream.produce(payload, event.timestamp)
            self.wake_host()
        else:
            self.outbox.put(frame)
        for sink in self.sinks:
            sink.broadcast(frame)

    def note_lost(self, count: int, cause: int) -> None:
        """Tell the host (v2) that ``count`` events were lost before the stream."""
        if self.stream is None or count < 1:
            return
        now = time.time_ns()
        self.stream.note_lost(count, cause, now, now)
        self.wake_host()

    def _now_ns(self) -> int:
        return self.identity.wall_ns(self.identity.now_boot_ns())

    def _process(self, state: ProcessState, creation_ns: int) -> pb.Process:
        membership = self.table.membership(state)
        return enc.process_message(state, membership, creation_ns)

    def _writer_uuid(self, ref: FileRef) -> bytes:
        if ref.writer is None:
            return b""
        return self.identity.uuid(ref.writer.tgid, ref.writer.start_ns)

    def _file(self, ref: FileRef) -> pb.File:
        return enc.file_message(ref, self._writer_uuid(ref))

    # ---- kernel events ------------------------------------------------

    def handle(self, raw: RawEvent) -> None:
        """Take one event from the kernel side."""
        if isinstance(raw, RawExec):
            self._on_exec(raw)
        elif isinstance(raw, RawFork):
            self._on_fork(raw)
        elif isinstance(raw, RawExit):
            self._on_exit(raw)
        elif isinstance(raw, RawMemexec):
            self._on_memexec(raw)
        elif isinstance(raw, RawWrite):
            logger.debug("first writer of %r is %d", raw.file.path, raw.ids.tgid)

    def _on_exec(self, raw: RawExec) -> None:
        new = self.table.on_exec(raw.ids, raw.binary)
        if new is not None:
            self._container_started(new, raw.boot_ns)
        if not self.config.execute_enabled:
            return
        state = self.table.track(raw.ids)
        process = self._process(state, self.identity.wall_ns(raw.boot_ns))
        process.binary.CopyFrom(self._file(raw.binary))
        missing = (raw.argv_missing_bytes, raw.envp_missing_bytes)
        process.args.CopyFrom(
            enc.args_message(raw.argv, raw.envp, self.config, missing)
        )
        process.streams.CopyFrom(enc.streams_message(raw.fds))
        self._emit(enc.execute_event(process, self.identity.wall_ns(raw.boot_ns)))

    def _on_fork(self, raw: RawFork) -> None:
        state = self.table.on_fork(raw.ids)
        if not self.config.execute_enabled:
            return
        process = self._process(state, self.identity.start_wall_ns(state.start_ns))
        self._emit(enc.clone_event(process, self.identity.wall_ns(raw.boot_ns)))

    def _on_exit(self, raw: RawExit) -> None:
        state = self.table.on_exit(raw.tgid, raw.start_ns)
        if state is not None:
            uuid = state.uuid
        elif raw.start_ns:
            uuid = self.identity.uuid(raw.tgid, raw.start_ns)
        else:
            return
        if self.config.execute_enabled:
            # Only v2 collectors add the status; v1 exits carry the UUID alone.
            status = raw.exit_code if self.stream is not None else None
            timestamp = self.identity.wall_ns(raw.boot_ns)
            self._emit(enc.exit_event(uuid, timestamp, status))

    def _on_memexec(self, raw: RawMemexec) -> None:
        if not self.config.memexec_enabled:
            return
        state = self.table.track(raw.ids)
        binary = state.binary
        initial = binary is not None and (binary.ino, binary.dev) == (
            raw.file.ino,
            raw.file.dev,
        )
        timestamp = self.identity.wall_ns(raw.boot_ns)
        process = self._process(state, self.identity.start_wall_ns(state.start_ns))
        event = enc.memexec_event(
            process, raw, self._file(raw.file), initial, timestamp
        )
        self._emit(event)

    # ---- containers ---------------------------------------------------

    def _container_started(self, new: NewContainer, boot_ns: int) -> None:
        if len(self.containers) >= MAX_CONTAINERS:
            self.containers.pop(next(iter(self.containers)))
        record = ContainerRecord(
            container_id=new.container_id,
            creation_ns=self.identity.wall_ns(boot_ns),
            init_uuid=new.init.uuid,
            metadata=self._bundle_metadata(new.init),
        )
        self.containers[new.container_id] = record
        self._announce(record)

    def _bundle_metadata(self, init: ProcessState) -> ContainerMetadata | None:
        pids = {init.tgid}
        state: ProcessState | None = init
        while state is not None and state.pidns_inum == init.pidns_inum:
            pids.add(state.tgid)
            state = self.table.get(state.ppid)
        if state is not None:
            pids.add(state.tgid)
        try:
            root = os.path.realpath(os.readlink(f"/proc/{init.tgid}/root"))
        except OSError:
            root = ""
        try:
            return self.bundles.lookup(pids, root)
        except OSError as exc:
            logger.debug("OCI bundle lookup failed: %s", exc)
            return None

    def _announce(self, record: ContainerRecord) -> None:
        if not self.config.container_enabled:
            return
        self._emit(
            enc.container_event(
                record.container_id,
                record.creation_ns,
                record.init_uuid,
                record.metadata,
                self._now_ns(),
            )
        )

    def report_container(self, report: dict[str, Any]) -> int:
        """Accept metadata from a local reporter; return the container id it names."""
        container_id = int(report.get("container_id") or 0)
        if not container_id and report.get("pid"):
            container_id = self.table.container_of_pid(int(report["pid"]))
        record = self.containers.get(container_id)
        if record is None:
            raise ConfigError(f"no container {container_id} (pid {report.get('pid')})")
        record.metadata = ContainerMetadata.from_mapping(report)
        self._announce(record)
        return container_id

    # ---- enumeration --------------------------------------------------

    def enumerate(self) -> int:
        """Report every live process once, as at the start of monitoring."""
        live = set()
        for snap in procfs.snapshot_all():
            live.add(snap.ids.tgid)
            new = self.table.adopt(snap.ids, snap.binary)
            if new is not None:
                self._container_started(new, snap.ids.start_ns)
        for state in self.table:
            if state.tgid not in live:
                self.table.on_exit(state.tgid, 0)
        if self.config.container_enabled:
            for record in list(self.containers.values()):
                self._announce(record)
        if not self.config.execute_enabled:
            return 0
        now = self._now_ns()
        count = 0
        for state in self.table:
            process = self._process(state, self.identity.start_wall_ns(state.start_ns))
            if state.binary is not None:
                process.binary.CopyFrom(self._file(state.binary))
            self._emit(enc.enumerate_event(process, now))
            count += 1
        logger.info("enumerated %d existing processes", count)
        return count

    # ---- configuration ------------------------------------------------

    def apply_config(self, config: CollectorConfig, origin: str) -> None:
        """Replace the configuration whole; all collectors off drops and resets."""
        self.config = config
        logger.info("configuration from %s: %s", origin, config.to_mapping())
        if not config.any_enabled:
            # Events already numbered in the v2 stream still go out: dropping
            # them would only turn them into a reported gap.
            self.outbox.clear(DropCause.COLLECTORS_OFF)
            self.counters.reset()
        if origin != "host" and self.notify_host is not None:
            notice = pb.ConfigurationResponse(
                error=pb.ConfigurationResponse.NO_ERROR,
                msg=f"local configuration change: {config.to_mapping()}",
                version=CSM_VERSION,
                kernel_version=procfs.kernel_version_code(),
            )
            self.notify_host(encode_config_response(notice))

    def answer_request(
        self, request: pb.ConfigurationRequest | None
    ) -> pb.ConfigurationResponse:
        """Apply a decoded host request (None: it did not decode); the answer."""
        self.counters.config_requests += 1
        response = pb.ConfigurationResponse(
            version=CSM_VERSION, kernel_version=procfs.kernel_version_code()
        )
        if request is None:
            self.counters.config_errors += 1
            logger.warning("undecodable configuration request from the host")
            response.error = pb.ConfigurationResponse.UNKNOWN
            response.msg = "configuration request does not decode"
            return response
        self.apply_config(CollectorConfig.from_request(request), "host")
        response.error = pb.ConfigurationResponse.NO_ERROR
        return response

    def on_config_request(self, payload: bytes) -> bytes:
        """Apply a v1 host request and return the type-4 response frame."""
        request = pb.ConfigurationRequest()
        try:
            request.ParseFromString(payload)
        except DecodeError:
            return encode_config_response(self.answer_request(None))
        return encode_config_response(self.answer_request(request))


def _nothing() -> None:
    return None
