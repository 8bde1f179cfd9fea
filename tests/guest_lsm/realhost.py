"""A real ``csm-receiver serve`` subprocess for the guest's full-path tests."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.guest_lsm.conftest import AgentFactory, AgentProcess

VM = "guest1"
TOKEN = "guest-full-path-token"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Receiver:
    """A ``csm-receiver serve`` subprocess with one hybrid VM."""

    uds: Path
    data_dir: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def guest_socket(self) -> Path:
        """Where the guest dials: the hybrid listener for port 4444."""
        return Path(f"{self.uds}_4444")

    def start(self) -> None:
        """Start the receiver and wait for its API."""
        command = [
            str(Path(sys.executable).parent / "csm-receiver"),
            "serve",
            "--no-vsock",
            "--vm",
            f"{VM}=hybrid:{self.uds}",
            "--api",
            f"127.0.0.1:{self.port}",
            "--api-token",
            TOKEN,
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"receiver exited:\n{self.log.read_text()}")
            try:
                self.get(f"/api/v1/vms/{VM}")
                if self.guest_socket.exists():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"receiver never came up:\n{self.log.read_text()}")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the receiver."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> Any:
        """GET a JSON resource with the operator token."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def processes(self, **filters: str) -> list[dict[str, Any]]:
        """Every process of the VM matching the filters (all pages)."""
        items: list[dict[str, Any]] = []
        query = "&".join(f"{k}={v}" for k, v in {"limit": "1000", **filters}.items())
        page = self.get(f"/api/v1/vms/{VM}/processes?{query}")
        items.extend(page["items"])
        while page.get("next"):
            page = self.get(f"/api/v1/vms/{VM}/processes?{query}&cursor={page['next']}")
            items.extend(page["items"])
        return items


def wait_until(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {predicate}")


def start_agent(agents: AgentFactory, receiver: Receiver, *extra: str) -> None:
    # The agent dials the receiver; the factory waits on a HostSim, so
    # start it by hand here.
    index = len(agents.started)
    control = agents.tmp_path / f"control{index}.sock"
    log = agents.tmp_path / f"agent{index}.log"
    argv = [
        sys.executable,
        "-m",
        "guest_lsm.cli",
        "run",
        "--unix",
        str(receiver.guest_socket),
        "--backend",
        "tracepoint",
        "--control",
        str(control),
        "--build-dir",
        str(agents.build_dir),
        *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    agents.started.append(AgentProcess(process, control, log, argv))
    wait_until(lambda: receiver.get(f"/api/v1/vms/{VM}").get("connected"))
