"""Fake guests for the dashboard tests: a large simulated process tree, and
a guest that stays connected and answers configuration requests."""

import asyncio
import contextlib
import struct
from pathlib import Path

from csm_wire.codec import FrameDecoder, FrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import encode_config_response, encode_event, encode_heartbeat

UUID_LAYOUT = struct.Struct("<IQI")
MACHINE_ID = 0x7EE70001
BOOT_NS = 1_764_000_000_000_000_000
KERNEL_6_1 = (6 << 16) | (1 << 8) | 90


def _uuid(tgid: int) -> bytes:
    return UUID_LAYOUT.pack(MACHINE_ID, BOOT_NS + tgid * 1_000_000, tgid)


def _exec_frame(tgid: int, parent: int, binary: str, argv: list[str]) -> bytes:
    started = BOOT_NS + tgid * 1_000_000
    process = pb.Process(
        creation_timestamp=started,
        uuid=_uuid(tgid),
        pid=tgid,
        binary=pb.File(fullpath=binary.encode()),
        parent_pid=parent,
        parent_uuid=_uuid(parent) if parent else b"",
        args=pb.ProcessArguments(argv=[a.encode() for a in argv]),
    )
    event = pb.Event(execute=pb.ExecuteEvent(proc=process), timestamp=started)
    return encode_event(event)


def simulated_tree(total: int, services: int = 20, workers: int = 10) -> bytes:
    """A guest stream with ``total`` processes: init, services, workers, jobs.

    Pids double as tgids and count up, so every parent precedes its children.
    """
    frames = [_exec_frame(1, 0, "/sbin/init", ["/sbin/init"])]
    pid = 1
    parents: list[int] = []
    for service in range(services):
        pid += 1
        frames.append(
            _exec_frame(pid, 1, f"/usr/bin/svc-{service:02d}", [f"svc-{service:02d}"])
        )
        service_pid = pid
        for worker in range(workers):
            pid += 1
            argv = ["python3", "-m", f"worker.{service}.{worker}"]
            frames.append(_exec_frame(pid, service_pid, "/usr/bin/python3", argv))
            parents.append(pid)
    job = 0
    while pid < total:
        pid += 1
        parent = parents[job % len(parents)]
        argv = ["/bin/sh", "-c", f"run-job --id {job} --queue q{job % 7}"]
        frames.append(_exec_frame(pid, parent, "/bin/sh", argv))
        job += 1
    return b"".join(frames)


class AnsweringGuest:
    """A connected guest that beats and answers each configuration request."""

    def __init__(self, path: Path, message: str = "applied") -> None:
        self.path = path
        self.message = message
        self.requests: list[pb.ConfigurationRequest] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        """Connect, say hello with a heartbeat, and start answering."""
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        self._writer = writer
        writer.write(encode_heartbeat())
        await writer.drain()
        self._task = asyncio.create_task(self._serve(reader, writer))

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(4096):
            for frame in decoder.feed(data):
                if frame.type != FrameType.CONFIG_REQUEST:
                    continue
                request = pb.ConfigurationRequest()
                request.ParseFromString(frame.payload)
                self.requests.append(request)
                answer = pb.ConfigurationResponse(
                    error=pb.ConfigurationResponse.NO_ERROR,
                    msg=self.message,
                    version=1,
                    kernel_version=KERNEL_6_1,
                )
                writer.write(encode_config_response(answer))
                await writer.drain()

    async def stop(self) -> None:
        """Hang up and wait for the answering task."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task
