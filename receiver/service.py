"""The receiver service: listeners, sessions, ingest and API, started and
stopped in order."""

import asyncio
import gc
import logging
import secrets
import socket
import time
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from csm_wire.gen import schema_pb2 as pb
from receiver.api.app import create_app
from receiver.api.auth import TokenStore
from receiver.api.metrics import IngestStats
from receiver.api.stream import publish_stored_events
from receiver.control import ControlPlane
from receiver.detect.detector import Detector
from receiver.detect.findings import Finding
from receiver.detect.outputs import WebhookSink
from receiver.errors import VmError
from receiver.fleet.member import FleetMember
from receiver.ingest.journal import Journal, JournalFull
from receiver.ingest.pipeline import Ingestor, IngestQueue
from receiver.live import LiveHub
from receiver.sessions.delivery import Delivery
from receiver.sessions.registry import VmRegistry
from receiver.sessions.session import GuestSession
from receiver.sessions.vm import VmHealth, VmState
from receiver.settings import Settings, VmSpec
from receiver.store.configs import vm_scope
from receiver.store.delivery import load_applied, load_sequences
from receiver.store.engine import create_engine, migrate
from receiver.store.vms import fetch_registered_vms, mark_vm_deleted
from receiver.transports.hybrid import HybridListener
from receiver.transports.listener import Listener
from receiver.transports.protocol import GuestProtocol
from receiver.transports.vsock import VsockListener

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_S = 1.0
TOKEN_FILE = "api-token"
TOKENS_FILE = "tokens"


def load_or_create_token(data_dir: Path) -> str:
    """Read the operator token file, creating it (mode 0600) if missing."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    log.info("operator API token written to %s", path.resolve())
    return token


def _webhook(settings: Settings) -> WebhookSink | None:
    if settings.webhook_url is None:
        return None
    return WebhookSink(
        settings.webhook_url,
        capacity=settings.webhook_queue_findings,
        timeout_s=settings.webhook_timeout_s,
        retry_max_s=settings.webhook_retry_max_s,
    )


class Service:
    """Owns every long-lived part of the receiver."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.db_url)
        self.registry = VmRegistry(self.engine, settings.host, settings.guest_limits)
        self.queue = IngestQueue(
            settings.ingest_queue_events,
            vm_max_bytes=settings.ingest_vm_max_bytes,
            total_max_bytes=settings.ingest_total_max_bytes,
        )
        self.journal = Journal(
            settings.data_dir / "journal",
            max_bytes=settings.journal_max_bytes,
            segment_bytes=settings.journal_segment_bytes,
            fsync=not settings.journal_no_fsync,
        )
        self.ingestor = Ingestor(
            self.engine,
            self.queue,
            batch_max_events=settings.batch_max_events,
            batch_interval_s=settings.batch_interval_s,
            journal=self.journal,
        )
        self.delivery = Delivery(self.journal, self.queue, self.ingestor)
        self._delivery_task: asyncio.Task[None] | None = None
        self.hub = LiveHub()
        self.ingest_stats = IngestStats(self.ingestor)
        self.ingestor.add_listener(self.ingest_stats.observe)
        self.ingestor.add_listener(publish_stored_events(self.hub))
        self.control = ControlPlane(
            self.engine,
            self.registry,
            timeout_s=settings.config_timeout_s,
            spawn=self.spawn,
        )
        self.fleet = FleetMember(self)
        self.detector = Detector.for_engine(
            self.engine,
            self.hub,
            rules_path=settings.rules,
            webhook=_webhook(settings),
        )
        self.detector.journal = self._journal_finding
        self.findings_unjournaled = 0
        self.ingestor.add_evaluator(self.detector.on_batch)
        self.listeners: dict[str, Listener] = {}
        self.tokens = TokenStore()
        self.api_runner: web.AppRunner | None = None
        self.api_port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ingest_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Migrate the store, open listeners and the API."""
        await migrate(self.engine)
        await self.fleet.prepare()
        self.detector.load_rules()
        if self.detector.webhook is not None:
            self.detector.webhook.start()
        self._load_tokens()
        await self.control.load()
        registered = await self._registered_specs()

        # Replay the journal before any guest can connect, so sequence marks
        # are complete when the first v2 hello arrives.
        for spec in self.settings.vms:
            await self.registry.register(spec, registered=False)
        for spec in registered:
            await self.registry.register(spec, registered=True)
        await self._replay_journal()
        self._ingest_task = asyncio.create_task(self.ingestor.run(), name="ingest")
        self._delivery_task = asyncio.create_task(self.delivery.run(), name="journal")
        self._health_task = asyncio.create_task(self._watch_health(), name="health")

        for spec in registered:
            await self.add_vm(spec, registered=True)
        for spec in self.settings.vms:
            await self.add_vm(spec)
        if not self.settings.no_vsock:
            self._open_vsock()
        await self._start_api()
        self.fleet.start()
        # What start-up made lives as long as the service: out of the
        # collector's sight, full collections stop scanning it (they set
        # the tail latency of large API answers; bench.fleet_summary).
        gc.collect()
        gc.freeze()

    async def _replay_journal(self) -> None:
        records = self.journal.open(readers=self.fleet.journal_readers)
        applied = await load_applied(self.engine, self.journal.journal_id)
        self.journal.continue_after(max(applied.values(), default=0))
        sequences = await load_sequences(self.engine)
        await self.delivery.replay(records, applied, sequences, self._vm_by_id)
        unevaluated, self.delivery.unevaluated = self.delivery.unevaluated, []
        if unevaluated:
            found = await self.detector.reevaluate(unevaluated)
            log.info(
                "journal: %d stored events evaluated again, %d findings journaled",
                len(unevaluated),
                found,
            )

    def _journal_finding(self, finding: Finding) -> None:
        try:
            self.journal.append_finding(finding.vm_id, finding.as_json())
        except JournalFull as exc:
            self.findings_unjournaled += 1
            log.error("finding %s not exported: %s", finding.kind, exc)

    async def _vm_by_id(self, vm_id: int) -> VmState:
        for vm in self.registry:
            if vm.vm_id == vm_id:
                return vm
        # A VM no longer configured: its journaled events are still stored.
        return VmState(vm_id, VmSpec(f"vm-{vm_id}", "hybrid"))

    def _load_tokens(self) -> None:
        token = self.settings.api_token
        if token is None:
            token = load_or_create_token(self.settings.data_dir)
        self.tokens.add(token, role="operator", label="operator")
        path = Path(self.settings.tokens_file or self.settings.data_dir / TOKENS_FILE)
        if self.settings.tokens_file is not None or path.exists():
            count = self.tokens.load_file(path)
            log.info("%d API tokens read from %s", count, path)

    def _open_vsock(self) -> None:
        try:
            listener = VsockListener(
                self.settings.port, self.registry.resolve_cid, self._start_session
            )
        except VmError as exc:
            log.warning("%s; native vsock VMs cannot connect", exc)
            return
        listener.start()
        self.listeners["<vsock>"] = listener

    async def _registered_specs(self) -> list[VmSpec]:
        """VMs registered through the API, unless a flag names them too."""
        flagged = {spec.name for spec in self.settings.vms}
        specs = await fetch_registered_vms(self.engine, self.settings.host)
        return [spec for spec in specs if spec.name not in flagged]

    async def add_vm(self, spec: VmSpec, *, registered: bool = False) -> VmState:
        """Add a VM and, for hybrid vsock, open its listener now.

        ``registered`` VMs (added through the API) are opened again when the
        receiver restarts; VMs from flags are only there while flagged.
        """
        vm = await self.registry.register(spec, registered=registered)
        if spec.transport == "hybrid" and spec.uds_path is not None:
            old = self.listeners.pop(spec.name, None)
            if old is not None:
                await old.close()
            listener = HybridListener(
                vm, spec.uds_path, self.settings.port, self._start_session
            )
            listener.start()
            self.listeners[spec.name] = listener
        return vm

    async def remove_vm(self, name: str) -> None:
        """Close a VM's listener and sessions; its history stays stored."""
        listener = self.listeners.pop(name, None)
        if listener is not None:
            await listener.close()
        vm = self.registry.remove(name)
        if vm is not None:
            for session in list(vm.sessions):
                session.close()
        await mark_vm_deleted(self.engine, name)
        log.info("vm %s: removed", name)

    async def _start_session(self, sock: socket.socket, vm: VmState) -> None:
        loop = asyncio.get_running_loop()
        if len(vm.sessions) >= self.settings.max_connections_per_vm:
            vm.counters.refused_connections += 1
            vm.warn(
                log,
                "connections",
                "refused a connection: %d already open",
                len(vm.sessions),
            )
            sock.close()
            return

        def make_session(transport: asyncio.Transport) -> GuestSession:
            session = GuestSession(
                vm,
                self.queue,
                max_frame_bytes=self.settings.max_frame_bytes,
                write=transport.write,
                close=transport.abort,
                on_config_answer=lambda vm, answer: self.control.on_answer(
                    session, vm, answer
                ),
                delivery=self.delivery,
                pause=transport.pause_reading,
                resume=transport.resume_reading,
            )
            session.open(self.control.attach(session, vm))
            # Accepting never waits on the store: the cached configuration
            # goes out now, and a newer stored one follows if there is one.
            self.spawn(self.control.refresh_session(session, vm))
            log.info("vm %s: guest connected", vm.name)
            return session

        await loop.connect_accepted_socket(lambda: GuestProtocol(make_session), sock)

    def desired_config(self, vm: VmState) -> pb.ConfigurationRequest:
        """The configuration ``vm`` should run: its own, the fleet's or built-in."""
        return self.control.effective(vm_scope(vm.vm_id)).request

    def spawn(self, coro: "asyncio._CoroutineLike[None]") -> None:
        """Run ``coro`` in the background, kept until it ends or we stop."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_CHECK_INTERVAL_S)
            for vm in self.registry:
                self._check_heartbeat(vm)
                self._close_idle_sessions(vm)

    def _check_heartbeat(self, vm: VmState) -> None:
        limit_s = (
            self.settings.heartbeat_interval_s
            * self.settings.heartbeat_missed_unhealthy
        )
        if vm.health is not VmHealth.HEALTHY or vm.last_heartbeat is None:
            return
        silent_s = time.time() - vm.last_heartbeat
        if silent_s > limit_s:
            vm.unhealthy = True
            log.warning("vm %s: no heartbeat for %.0fs, unhealthy", vm.name, silent_s)

    def _close_idle_sessions(self, vm: VmState) -> None:
        # A connection that completes no frame for this long is stuck or a
        # slowloris; a live guest heartbeats every few seconds.
        now = time.monotonic()
        for session in list(vm.sessions):
            if session.paused:
                continue
            if now - session.last_frame_at > self.settings.idle_timeout_s:
                vm.counters.idle_closed += 1
                vm.warn(
                    log,
                    "idle",
                    "closing a connection silent for %.0fs",
                    now - session.last_frame_at,
                )
                session.close()

    async def _start_api(self) -> None:
        app = create_app(self)
        self.api_runner = web.AppRunner(app, access_log=None)
        await self.api_runner.setup()
        host, port = self.settings.api_address
        site = web.TCPSite(self.api_runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.api_port = sockets[0].getsockname()[1] if sockets else port
        log.info("API and dashboard on http://%s:%d/", host, self.api_port)

    async def stop(self) -> None:
        """Close listeners and sessions, flush ingest, then close the store."""
        # Stop taking new connections first, then end the live ones.
        for listener in list(self.listeners.values()):
            await listener.close()
        self.listeners.clear()
        for vm in self.registry:
            for session in list(vm.sessions):
                session.close()
        await asyncio.sleep(0)

        # Flush what the guests already sent.
        self.ingestor.stop()
        if self._ingest_task is not None:
            await self._ingest_task
        self.delivery.stop()
        if self._delivery_task is not None:
            await self._delivery_task
        self.journal.close()
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fleet.stop_export()
        await self.fleet.stop_leases()

        # Deliver the last findings, then close the API and the database.
        if self.detector.webhook is not None:
            await self.detector.webhook.close(self.settings.webhook_timeout_s)
        if self.api_runner is not None:
            await self.api_runner.cleanup()
        await self.engine.dispose()
        log.info("stopped; %d events stored", self.ingestor.events_written)
