"""A minimal host for tests: a Unix listener that decodes what the agent sends."""

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from csm_wire.codec import FrameDecoder
from csm_wire.errors import UnknownFrameType
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import (
    ConfigResponseMessage,
    EventMessage,
    GuestMessage,
    Heartbeat,
    decode_guest_frame,
    encode_config_request,
)


@dataclass
class Received:
    """One decoded frame and the connection it came on."""

    connection: int
    message: GuestMessage
    at: float = field(default_factory=time.monotonic)


class HostSim:
    """Accepts agent connections one at a time and records every frame."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received: list[Received] = []
        self.connections = 0
        # Frame types a v1 host does not know (a v2 hello), skipped as v1 does.
        self.skipped_types: list[int] = []
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._all: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self._stopped:
                conn.close()
                return
            with self._lock:
                self.connections += 1
                index = self.connections
                self._conn = conn
                self._all.append(conn)
            threading.Thread(
                target=self._read_loop, args=(conn, index), daemon=True
            ).start()

    def _read_loop(self, conn: socket.socket, index: int) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = conn.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            for frame in decoder.feed(data):
                try:
                    message = decode_guest_frame(frame)
                except UnknownFrameType:
                    with self._lock:
                        self.skipped_types.append(frame.type)
                    continue
                with self._lock:
                    self.received.append(Received(index, message))

    def send_config(self, request: pb.ConfigurationRequest) -> None:
        """Send a configuration request on the current connection."""
        with self._lock:
            conn = self._conn
        assert conn is not None, "no agent connected"
        conn.sendall(encode_config_request(request))

    def drop_connection(self) -> None:
        """Close the current connection, as a restarting receiver would."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        """Stop listening and close everything."""
        self._stopped = True
        # shutdown wakes the thread blocked in accept; close alone does not.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._server.close()
        self.drop_connection()
        with self._lock:
            for conn in self._all:
                conn.close()
        self.path.unlink(missing_ok=True)

    # ---- queries ------------------------------------------------------

    def events(self, since: int = 0) -> list[pb.Event]:
        """Decoded events, from connection ``since`` on."""
        with self._lock:
            return [
                r.message.event
                for r in self.received
                if isinstance(r.message, EventMessage) and r.connection >= since
            ]

    def heartbeats(self, connection: int) -> int:
        """Heartbeats seen on one connection."""
        with self._lock:
            return sum(
                1
                for r in self.received
                if isinstance(r.message, Heartbeat) and r.connection == connection
            )

    def responses(self) -> list[ConfigResponseMessage]:
        """Configuration responses received."""
        with self._lock:
            return [
                r.message
                for r in self.received
                if isinstance(r.message, ConfigResponseMessage)
            ]

    def wait_for(
        self, predicate: Callable[[], object], timeout_s: float = 15.0
    ) -> object:
        """Poll until ``predicate()`` is truthy; fail the test on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")


def processes_of(events: list[pb.Event], kind: str) -> list[pb.Process]:
    """The ``proc`` of every event of one kind (execute, clone, enumproc, memexec)."""
    return [getattr(event, kind).proc for event in events if event.HasField(kind)]


def exits_of(events: list[pb.Event]) -> set[bytes]:
    """UUIDs of every exit event."""
    return {event.exit.process_uuid for event in events if event.HasField("exit")}


def execs_by_argv0(procs: list[pb.Process], argv0: bytes) -> list[pb.Process]:
    """The processes whose argv[0] is ``argv0``."""
    return [proc for proc in procs if proc.args.argv and proc.args.argv[0] == argv0]
