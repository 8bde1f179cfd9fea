"""Run the collector: pick an event source, connect to the host, serve control.

Everything loaded into the kernel is detached when ``run_collector``
returns, whether it ends by SIGTERM, SIGINT or an exception.
"""

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import asdict
from typing import Any, Protocol

from csm_wire.v2_guest import LossCause
from guest_lsm.agent import Agent
from guest_lsm.config import CollectorConfig, Settings, load_config_file
from guest_lsm.control import ControlServer
from guest_lsm.enrich.identity import Identity
from guest_lsm.errors import BackendUnavailable, BuildError, ConfigError
from guest_lsm.kernel.backend import Backend
from guest_lsm.kernel.build import build_object
from guest_lsm.kernel.loader import BpfSource
from guest_lsm.kernel.proc_connector import ProcConnectorSource
from guest_lsm.raw import SourceCounters
from guest_lsm.transport.link import HostDialer, HostLink
from guest_lsm.transport.local_stream import LocalStream
from guest_lsm.transport.stream_link import StreamLink

logger = logging.getLogger(__name__)

LOSS_CHECK_INTERVAL_S = 0.25


class EventSource(Protocol):
    """What the service needs of a kernel-side source."""

    def poll(self) -> int:
        """Hand waiting events to the agent."""

    def counters(self) -> SourceCounters:
        """Losses the source knows about."""

    def close(self) -> None:
        """Detach from the kernel."""


def open_source(settings: Settings, agent: Agent) -> tuple[EventSource, Backend]:
    """Start the requested backend; AUTO falls back from BPF to the proc connector."""
    if settings.backend is not Backend.PROC:
        try:
            path = build_object(settings.build_dir)
            bpf = BpfSource(str(path), settings.backend, agent.handle)
            return bpf, bpf.start()
        except (BuildError, BackendUnavailable) as exc:
            if settings.backend is not Backend.AUTO:
                raise
            logger.warning("BPF is unavailable (%s); falling back to proc", exc)
    proc = ProcConnectorSource(agent.handle)
    proc.start()
    return proc, Backend.PROC


def initial_config(settings: Settings) -> CollectorConfig:
    """The configuration at start: every collector on, a file, or all off."""
    if settings.enable_all:
        return CollectorConfig.all_on()
    if settings.config_file is not None:
        return load_config_file(settings.config_file)
    return CollectorConfig()


def open_link(settings: Settings, agent: Agent) -> HostDialer:
    """The host link: the v2 stream (with its v1 fallback), or plain v1."""
    if agent.stream is None:
        return HostLink(
            settings,
            agent.outbox,
            agent.counters,
            on_connect=agent.enumerate,
            on_request=agent.on_config_request,
        )
    link = StreamLink(
        settings,
        agent.stream,
        agent.counters,
        on_connect=agent.enumerate,
        on_request=agent.answer_request,
        extra_drops=lambda: agent.counters.drops,
    )
    agent.wake_host = link.wake
    return link


class SourceLosses:
    """Turns the source's loss counters into loss reports as they grow."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._overflow = 0
        self._unusable = 0

    def check(self, counters: SourceCounters) -> None:
        """Report what was lost since the last check."""
        # The proc connector counts overflows (ENOBUFS), not events: each is
        # at least one lost event, so its reports are lower bounds.
        overflow = counters.ring_full
        unusable = counters.undecodable + counters.extra.get("handler_errors", 0)
        self._agent.note_lost(overflow - self._overflow, LossCause.SOURCE_OVERFLOW)
        self._agent.note_lost(unusable - self._unusable, LossCause.ENCODING_FAILED)
        self._overflow, self._unusable = overflow, unusable


class Collector:
    """The running collector: agent, source, host link and control socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agent = Agent(settings, Identity.from_system(), initial_config(settings))
        self.link = open_link(settings, self.agent)
        self.losses = SourceLosses(self.agent)
        self.agent.notify_host = self.link.send_now
        self.control = ControlServer(settings.control, self.handle_control)
        self.local = (
            LocalStream(settings.local_stream, self.agent.counters)
            if settings.local_stream
            else None
        )
        self.source: EventSource | None = None
        self.backend: Backend | None = None

    def stats(self) -> dict[str, Any]:
        """Counters of the agent and the event source."""
        source = self.source.counters() if self.source else SourceCounters()
        return {
            "backend": self.backend.value if self.backend else None,
            "connected": self.link.connected,
            "protocol": self.link.protocol,
            "stream": self._stream_stats(),
            "queue_depth": len(self.agent.outbox),
            "processes": len(self.agent.table),
            "agent": self.agent.counters.snapshot(),
            "kernel": {
                "ring_full": source.ring_full,
                "argv_faults": source.argv_faults,
                "envp_faults": source.envp_faults,
                "writers_recorded": source.writers_recorded,
                "undecodable": source.undecodable,
                **source.extra,
            },
        }

    def _stream_stats(self) -> dict[str, Any] | None:
        stream = self.agent.stream
        if stream is None:
            return None
        return {
            "state": stream.state.value,
            "next_seq": stream.next_seq,
            "acked_seq": stream.acked_seq,
            "replay_buffer_events": stream.buffered_events,
            "replay_capacity_events": stream.replay_capacity_events,
            "drops": dict(stream.drops),
            **asdict(stream.counters),
        }

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request."""
        command = request.get("cmd")
        if command == "stats":
            return {"stats": self.stats()}
        if command == "config-get":
            return {"config": self.agent.config.to_mapping()}
        if command == "config-set":
            config = CollectorConfig.from_mapping(dict(request.get("config") or {}))
            self.agent.apply_config(config, "local")
            return {"config": config.to_mapping()}
        if command == "container":
            report = request.get("report")
            if not isinstance(report, dict):
                raise ConfigError("a container report is a JSON object")
            return {"container_id": self.agent.report_container(report)}
        raise ConfigError(f"unknown command {command!r}")

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; detach from the kernel on the way out."""
        self.source, self.backend = open_source(self.settings, self.agent)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.control.start()
            if self.local is not None:
                await self.local.start()
                self.agent.sinks.append(self.local)
            tasks.append(asyncio.create_task(self._pump(self.source, stop)))
            tasks.append(asyncio.create_task(self.link.run(stop)))
            await stop.wait()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.source.close()
            logger.info("detached from the kernel; final counters %s", self.stats())
            await self.control.close()
            if self.local is not None:
                await self.local.close()

    async def _pump(self, source: EventSource, stop: asyncio.Event) -> None:
        """Drain the source: on readability for proc, on a timer for BPF."""
        loop = asyncio.get_running_loop()

        next_check = 0.0

        def poll() -> None:
            nonlocal next_check
            source.poll()
            # Reading the kernel's counters costs a syscall per slot: not
            # on every poll.
            now = time.monotonic()
            if self.agent.stream is not None and now >= next_check:
                next_check = now + LOSS_CHECK_INTERVAL_S
                self.losses.check(source.counters())

        if isinstance(source, ProcConnectorSource):
            loop.add_reader(source.fileno(), poll)
            try:
                await stop.wait()
            finally:
                loop.remove_reader(source.fileno())
            return
        # Records are submitted without wakeups: only a timer brings them.
        while not stop.is_set():
            poll()
            await asyncio.sleep(self.settings.consume_interval_s)


async def run_collector(settings: Settings) -> None:
    """Run a collector until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Collector(settings).run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
