"""What makes a receiver one of many on a shared database: host and VM
leases, configuration relayed for its VMs, time partitions and retention,
and the export of its journal (events, gaps, findings) to stream engines."""

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from csm_wire.gen import schema_pb2 as pb
from receiver.export.exporter import Exporter, Sink
from receiver.export.kafka import KafkaSink
from receiver.export.nats import NatsSink
from receiver.fleet.presence import Presence
from receiver.fleet.relay import ConfigRelay, push_to_latest_session
from receiver.sessions.vm import VmState
from receiver.store.partitions import apply_retention, ensure_partitions

if TYPE_CHECKING:
    from receiver.service import Service
    from receiver.settings import Settings

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 3600.0


class FleetMember:
    """Runs the fleet parts of one receiver beside its service."""

    def __init__(self, service: "Service") -> None:
        self.service = service
        settings = service.settings
        self.instance = uuid.uuid4().hex
        self.presence = Presence(
            service.engine,
            settings.host,
            self.instance,
            lambda: service.registry,
            interval_s=settings.fleet_heartbeat_s,
            api=self._api_address,
        )
        self.relay = ConfigRelay(
            service.engine, settings.host, self.find_vm, self._push_local
        )
        self.exporters = [
            Exporter(service.journal, settings.host, sink, self.vm_name)
            for sink in _sinks(settings)
        ]
        self._names: dict[int, str] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._export_tasks: list[asyncio.Task[None]] = []

    def _api_address(self) -> str:
        host, port = self.service.settings.api_address
        return f"{host}:{self.service.api_port or port}"

    def find_vm(self, vm_id: int) -> VmState | None:
        """The VM with database id ``vm_id``, if this receiver serves it."""
        for vm in self.service.registry:
            if vm.vm_id == vm_id:
                return vm
        return None

    def vm_name(self, vm_id: int) -> str:
        """The name of VM ``vm_id`` on this host (``vm-<id>`` once removed)."""
        name = self._names.get(vm_id)
        if name is None:
            vm = self.find_vm(vm_id)
            if vm is None:
                return f"vm-{vm_id}"
            name = self._names[vm_id] = vm.name
        return name

    @property
    def journal_readers(self) -> list[str]:
        """The journal readers of the exporters."""
        return [exporter.reader_name for exporter in self.exporters]

    async def _push_local(
        self, vm: VmState, config: pb.ConfigurationRequest
    ) -> tuple[str, dict[str, Any] | None]:
        return await push_to_latest_session(
            vm, config, self.service.settings.config_timeout_s
        )

    async def prepare(self) -> None:
        """Before ingest: today's partitions and the ones ahead exist."""
        await self.maintain()
        await self.presence.check_alone()

    async def maintain(self) -> None:
        """Create partitions ahead of time and apply retention."""
        settings = self.service.settings
        now = time.time_ns()
        await ensure_partitions(
            self.service.engine, now, ahead_days=settings.partition_ahead_days
        )
        await apply_retention(self.service.engine, now, settings.retention_days)

    async def _maintain_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), MAINTENANCE_INTERVAL_S)
            if self._stop.is_set():
                return
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("partition maintenance failed, retrying later: %s", exc)

    def start(self) -> None:
        """Start leases, the relay, maintenance and the exporter."""
        self._tasks = [
            asyncio.create_task(self.presence.run(self._stop), name="fleet-presence"),
            asyncio.create_task(self.relay.run(self._stop), name="fleet-relay"),
            asyncio.create_task(self._maintain_forever(), name="fleet-maintenance"),
        ]
        for exporter in self.exporters:
            self.service.ingestor.add_listener(exporter.notify)
            self._export_tasks.append(
                asyncio.create_task(exporter.run(), name=f"export-{exporter.sink.name}")
            )

    async def stop_leases(self) -> None:
        """Stop relaying and renewing, and give the leases up."""
        # Let each loop finish its query: cancelling one mid-query could
        # leave a pooled connection behind.
        self._stop.set()
        self.relay.wake()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.presence.release()
        except Exception as exc:
            log.warning("could not release the leases of this host: %s", exc)

    async def stop_export(self) -> None:
        """After ingest flushed: export what is journaled, then close the sinks."""
        for exporter in self.exporters:
            exporter.stop()
        await asyncio.gather(*self._export_tasks)
        self._export_tasks = []
        for exporter in self.exporters:
            await exporter.sink.close()


def _sinks(settings: "Settings") -> list[Sink]:
    """The stream engines the settings name."""
    sinks: list[Sink] = []
    if settings.nats_url:
        sinks.append(
            NatsSink(settings.nats_url, settings.nats_stream, settings.nats_subject)
        )
    if settings.kafka_bootstrap:
        sinks.append(KafkaSink(settings.kafka_bootstrap, settings.kafka_topic_prefix))
    return sinks
