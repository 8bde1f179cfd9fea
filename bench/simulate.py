"""The guest-fleet simulator: one workload per VM, streamed into hybrid
vsock listeners the way guests reach a real receiver.

Each VM connects to ``<uds_path>_<port>``, greets, answers configuration
requests, beats every few seconds and sends its events at a given rate (or
as fast as the socket takes them). What was sent is kept per VM, so a
manifest can prove later that every process was stored.
"""

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.protocols import GuestProtocol, make_protocol
from bench.workload import GuestWorkload
from csm_wire.codec import FrameDecoder
from csm_wire.errors import FramingError
from csm_wire.gen import schema_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_PORT = 4444
HEARTBEAT_INTERVAL_S = 5.0
# Paced senders write this often; unpaced ones this many events a write.
TICK_S = 0.01
CHUNK_EVENTS = 512
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SimTarget:
    """A VM to simulate and the hybrid listener it connects to."""

    name: str
    uds_path: str
    port: int = DEFAULT_PORT

    @property
    def socket_path(self) -> str:
        """Where the receiver listens for this VM's guest."""
        return f"{self.uds_path}_{self.port}"


@dataclass(slots=True)
class SimResult:
    """What one VM sent."""

    name: str
    events: int = 0
    sent_bytes: int = 0
    config_answers: int = 0
    uuids: dict[bytes, None] = field(default_factory=dict)
    first_sent_ns: int = 0
    last_sent_ns: int = 0


def event_uuid(event: pb.Event) -> bytes | None:
    """The UUID of the process an event is about, if it is about one."""
    kind = event.WhichOneof("event")
    if kind == "exit":
        return event.exit.process_uuid
    if kind == "container":
        return None
    wrapper = getattr(event, kind)
    uuid: bytes = wrapper.proc.uuid
    return uuid


def workload_seed(seed: int, name: str) -> str:
    """The seed of one VM's workload: the run's seed and the VM's name."""
    return f"{seed}:{name}"


def encode_events(
    events: Iterator[pb.Event], count: int, protocol: GuestProtocol, result: SimResult
) -> list[bytes]:
    """Encode the next ``count`` events, noting their processes in ``result``."""
    frames: list[bytes] = []
    uuids = result.uuids
    for event in _take(events, count):
        uuid = event_uuid(event)
        if uuid is not None:
            uuids[uuid] = None
        frames.append(protocol.event_frame(event))
    return frames


def _take(events: Iterator[pb.Event], count: int) -> Iterator[pb.Event]:
    for _ in range(count):
        yield next(events)


class SimulatedGuest:
    """One VM's guest connection and its event stream."""

    def __init__(
        self,
        target: SimTarget,
        *,
        protocol: str,
        seed: int,
        real_time: bool,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.target = target
        self.protocol = make_protocol(protocol)
        self.workload = GuestWorkload(
            workload_seed(seed, target.name), real_time=real_time
        )
        self.events = self.workload.events()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.result = SimResult(target.name)
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def pregenerate(self, count: int) -> list[bytes]:
        """Encode ``count`` events ahead of time (for load tests)."""
        return encode_events(self.events, count, self.protocol, self.result)

    async def connect(self) -> None:
        """Connect, greet, and start answering the host and beating."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self.target.socket_path
                )
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        self._writer = writer
        writer.write(self.protocol.opening())
        self._tasks = [
            asyncio.create_task(self._answer_host(reader)),
            asyncio.create_task(self._beat()),
        ]

    async def _answer_host(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            try:
                frames = decoder.feed(data)
            except FramingError as exc:
                log.warning("vm %s: host sent a bad frame: %s", self.target.name, exc)
                return
            for frame in frames:
                reply = self.protocol.answer(frame)
                if reply is not None and self._writer is not None:
                    self.result.config_answers += 1
                    self._writer.write(reply)

    async def _beat(self) -> None:
        while self._writer is not None:
            await asyncio.sleep(self.heartbeat_interval_s)
            self._writer.write(self.protocol.heartbeat())

    async def send(self, frames: list[bytes]) -> None:
        """Write frames and wait until the socket has taken them."""
        assert self._writer is not None
        now = time.time_ns()
        if not self.result.first_sent_ns:
            self.result.first_sent_ns = now
        data = b"".join(frames)
        self._writer.write(data)
        await self._writer.drain()
        self.result.events += len(frames)
        self.result.sent_bytes += len(data)
        self.result.last_sent_ns = time.time_ns()

    async def stream(self, count: int | None, rate_per_s: float) -> None:
        """Send ``count`` events (None: forever) at ``rate_per_s`` (0: flat out)."""
        sent = 0
        started = time.monotonic()
        while count is None or sent < count:
            if rate_per_s > 0:
                await asyncio.sleep(TICK_S)
                due = int((time.monotonic() - started) * rate_per_s) - sent
            else:
                due = CHUNK_EVENTS
            if count is not None:
                due = min(due, count - sent)
            if due <= 0:
                continue
            await self.send(self.pregenerate(due))
            sent += due

    async def replay(self, frames: list[bytes], rate_per_s: float) -> None:
        """Send pre-encoded frames at ``rate_per_s`` (0: flat out)."""
        sent = 0
        started = time.monotonic()
        while sent < len(frames):
            if rate_per_s > 0:
                await asyncio.sleep(TICK_S)
                due = int((time.monotonic() - started) * rate_per_s) - sent
            else:
                due = CHUNK_EVENTS
            if due > 0:
                await self.send(frames[sent : sent + due])
                sent += min(due, len(frames) - sent)

    async def close(self) -> None:
        """Stop beating and close the connection."""
        writer, self._writer = self._writer, None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class FleetRun:
    """How to drive a fleet: how much, how fast, which protocol."""

    events_per_vm: int | None
    rate_per_vm: float = 0.0
    protocol: str = "v1"
    seed: int = 1
    pregenerate: bool = False
    real_time: bool = False
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    # Stay connected (beating) this long after the last event.
    hold_s: float = 0.0


async def run_fleet(targets: list[SimTarget], run: FleetRun) -> list[SimResult]:
    """Connect every VM, stream its workload, close; return what was sent."""
    guests = [
        SimulatedGuest(
            target,
            protocol=run.protocol,
            seed=run.seed,
            real_time=run.real_time,
            heartbeat_interval_s=run.heartbeat_interval_s,
        )
        for target in targets
    ]
    prepared: list[list[bytes]] = []
    if run.pregenerate and run.events_per_vm is not None:
        prepared = [guest.pregenerate(run.events_per_vm) for guest in guests]
    await asyncio.gather(*(guest.connect() for guest in guests))
    try:
        if prepared:
            sends = [
                guest.replay(frames, run.rate_per_vm)
                for guest, frames in zip(guests, prepared, strict=True)
            ]
        else:
            sends = [
                guest.stream(run.events_per_vm, run.rate_per_vm) for guest in guests
            ]
        await asyncio.gather(*sends)
        await asyncio.sleep(run.hold_s)
    finally:
        await asyncio.gather(*(guest.close() for guest in guests))
    return [guest.result for guest in guests]


def manifest(results: list[SimResult]) -> dict[str, list[str]]:
    """VM name to the hex UUIDs of every process it sent an event about."""
    return {result.name: [uuid.hex() for uuid in result.uuids] for result in results}


def write_manifest(path: Path, results: list[SimResult]) -> None:
    """Write the manifest as JSON, atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(manifest(results), indent=1) + "\n")
    os.replace(temporary, path)
