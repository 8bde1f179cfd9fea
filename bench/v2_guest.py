"""A protocol-v2 guest for tests and benchmarks, over a hybrid Unix socket.

It behaves like the guest agent: one :class:`~csm_wire.v2_guest.GuestStream`
per boot, reconnecting whenever the connection drops and replaying what the
host has not acknowledged. Use it as::

    guest = V2TestGuest(socket_path, machine_id=0x1234)
    await guest.start()
    for n in range(1000):
        guest.produce(sample_event(guest.machine_id, n))
    await guest.wait_acked()
    await guest.stop()
"""

import asyncio
import contextlib
import logging
import os
import struct
import time
from pathlib import Path

from csm_wire.errors import FramingError
from csm_wire.gen import schema_pb2 as pb
from csm_wire.v2_guest import GuestStream, StreamState

log = logging.getLogger(__name__)

BASE_TIME_NS = 1_700_000_000_000_000_000
WRITE_CHUNK_BYTES = 256 << 10


def sample_uuid(machine_id: int, n: int) -> bytes:
    """The UUID of the ``n``-th sample process of a boot."""
    return struct.pack("<IQI", machine_id, BASE_TIME_NS + n, 1000 + n % 30000)


def sample_event(machine_id: int, n: int, timestamp: int = 0) -> pb.Event:
    """An execute event of a process of its own, so every event is a row."""
    uuid = sample_uuid(machine_id, n)
    proc = pb.Process(
        creation_timestamp=BASE_TIME_NS + n,
        uuid=uuid,
        pid=1000 + n % 30000,
        parent_pid=1,
        parent_uuid=sample_uuid(machine_id, 0),
        binary=pb.File(fullpath=b"/usr/bin/true", ino=42),
        args=pb.ProcessArguments(argv=[b"true", str(n).encode()]),
    )
    return pb.Event(
        timestamp=timestamp or BASE_TIME_NS + n,
        execute=pb.ExecuteEvent(proc=proc),
    )


class V2TestGuest:
    """A reconnecting v2 guest streaming to ``path``."""

    def __init__(
        self,
        path: Path,
        machine_id: int,
        *,
        replay_capacity_events: int = 1 << 20,
        reconnect_delay_s: float = 0.05,
        heartbeat_interval_s: float = 1.0,
    ) -> None:
        self.path = path
        self.machine_id = machine_id
        self.reconnect_delay_s = reconnect_delay_s
        self.stream = GuestStream(
            machine_id,
            software_version="csm-bench v2 test guest",
            replay_capacity_events=replay_capacity_events,
            replay_capacity_bytes=1 << 40,
            heartbeat_interval_s=heartbeat_interval_s,
        )
        self.connections = 0
        self.configs: list[pb.ConfigurationRequest | None] = []
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._stopping = False

    def produce(self, event: pb.Event) -> int | None:
        """Hand one event to the stream; its sequence, or None if lost."""
        seq = self.stream.produce(event)
        self._wake.set()
        return seq

    async def start(self) -> None:
        """Connect in the background and keep connecting until stopped."""
        self._task = asyncio.create_task(self._run(), name=f"guest {self.path}")

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopping = True
        self.drop_connection()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def drop_connection(self) -> None:
        """Abort the current connection (the guest will reconnect)."""
        if self._writer is not None:
            self._writer.transport.abort()

    @property
    def all_acked(self) -> bool:
        """True when the host acknowledged every sequence produced."""
        return self.stream.acked_seq >= self.stream.next_seq - 1

    async def wait_acked(self, timeout_s: float = 60.0) -> None:
        """Wait until the host acknowledged everything produced."""
        deadline = time.monotonic() + timeout_s
        while not self.all_acked:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"acked {self.stream.acked_seq} of {self.stream.next_seq - 1}"
                )
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    os.fspath(self.path)
                )
            except OSError:
                await asyncio.sleep(self.reconnect_delay_s)
                continue
            self.connections += 1
            self._writer = writer
            try:
                await self._converse(reader, writer)
            except (OSError, FramingError) as exc:
                log.debug("guest %08x: connection lost: %s", self.machine_id, exc)
            finally:
                self.connected.clear()
                self.stream.disconnected()
                self._writer = None
                writer.transport.abort()
            await asyncio.sleep(self.reconnect_delay_s)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(self.stream.connect(time.monotonic()))
        read = asyncio.create_task(self._read(reader, writer))
        try:
            while not read.done():
                data = self.stream.data_to_send(WRITE_CHUNK_BYTES)
                data += self.stream.tick(time.monotonic())
                if data:
                    writer.write(data)
                    await writer.drain()
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.1)
        finally:
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, FramingError):
                await read

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for config in self.stream.receive(data):
                self.configs.append(config.request)
                writer.write(
                    self.stream.answer_config(
                        config, pb.ConfigurationResponse(version=2)
                    )
                )
            if self.stream.state is StreamState.V2:
                self.connected.set()
            self._wake.set()
