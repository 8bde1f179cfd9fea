"""The full path: collector over a Unix socket to the receiver's hybrid listener,
checked through the receiver's REST API."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.guest_lsm.conftest import AgentFactory, AgentProcess, Container

pytestmark = pytest.mark.root

VM = "guest1"
TOKEN = "guest-full-path-token"
PIPELINE = "/bin/sleep 0.4 | /usr/bin/tr a-z A-Z > /dev/null"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
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


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A real receiver with SQLite under the test's directory."""
    running = Receiver(
        uds=tmp_path / "vm",
        data_dir=tmp_path / "var",
        port=_free_port(),
        log=tmp_path / "receiver.log",
    )
    running.start()
    yield running
    running.stop()


def _wait(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {predicate}")


def _start_agent(agents: AgentFactory, receiver: Receiver, *extra: str) -> None:
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
    _wait(lambda: receiver.get(f"/api/v1/vms/{VM}").get("connected"))


def _allowlist_config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.json"
    path.write_text(
        json.dumps(
            {
                "execute_enabled": True,
                "memexec_enabled": True,
                "container_enabled": True,
                "argv_limit": 4096,
                "envp_limit": 4096,
                "envp_allowlist": ["PATH", "LANG"],
            }
        )
    )
    return path


def test_pipeline_through_the_receiver_rest_api(
    bpf_required: None, agents: AgentFactory, receiver: Receiver, tmp_path: Path
) -> None:
    _start_agent(agents, receiver, "--config-file", str(_allowlist_config(tmp_path)))
    time.sleep(1.0)
    shell = subprocess.Popen(
        ["/bin/sh", "-c", PIPELINE],
        env={"PATH": "/usr/bin:/bin", "LANG": "C", "CSM_SECRET": "x"},
    )
    assert shell.wait(timeout=10) == 0

    def family() -> list[dict[str, Any]] | None:
        procs = receiver.processes()
        by_pid = [p for p in procs if p["pid"] == shell.pid and p["argv"]]
        if not by_pid:
            return None
        children = [p for p in procs if p["parent_uuid"] == by_pid[0]["uuid"]]
        done = len(children) >= 2 and all(
            p["exited_at"] for p in [*children, by_pid[0]]
        )
        return [by_pid[0], *children] if done else None

    found = _wait(family)
    sh, *children = found
    assert sh["argv"] == ["/bin/sh", "-c", PIPELINE]
    assert sorted(sh["envp"]) == ["LANG=C", "PATH=/usr/bin:/bin"]
    by_argv0 = {child["argv"][0]: child for child in children}
    sleeper, upper = by_argv0["/bin/sleep"], by_argv0["/usr/bin/tr"]
    assert sleeper["argv"] == ["/bin/sleep", "0.4"]
    assert upper["argv"] == ["/usr/bin/tr", "a-z", "A-Z"]
    for child in (sleeper, upper):
        assert child["parent_pid"] == shell.pid
        assert "CSM_SECRET=x" not in child["envp"]
    assert sleeper["stdout"]["kind"] == "pipe"
    assert upper["stdin"]["kind"] == "pipe"
    assert upper["stdout"]["path"] == "/dev/null"


def test_container_binary_layer_and_writer_through_the_rest_api(
    bpf_required: None,
    agents: AgentFactory,
    receiver: Receiver,
    container: Container,
) -> None:
    _start_agent(agents, receiver, "--enable-all")
    time.sleep(1.0)
    container.run("/bin/cp /bin/true /tmp/added-true && /tmp/added-true full-path")

    def added() -> dict[str, Any] | None:
        procs = receiver.processes()
        hits = [p for p in procs if p["argv"] == ["/tmp/added-true", "full-path"]]
        return {"added": hits[0], "all": procs} if hits else None

    found = _wait(added)
    proc = found["added"]
    writer = [p for p in found["all"] if p["argv"] and p["argv"][0] == "/bin/cp"]
    assert proc["container_id"] != 0
    assert proc["binary_layer"] == "added"
    assert proc["binary_written_by"] == writer[0]["uuid"]


def test_receiver_restart_agent_reconnects_and_goes_on(
    bpf_required: None, agents: AgentFactory, receiver: Receiver
) -> None:
    _start_agent(agents, receiver, "--enable-all")
    receiver.stop(signal.SIGKILL)
    subprocess.run(["/bin/true", "while-receiver-down"], check=True)
    receiver.guest_socket.unlink(missing_ok=True)
    receiver.start()
    _wait(lambda: receiver.get(f"/api/v1/vms/{VM}").get("connected"))
    probe = subprocess.Popen(["/bin/true", "after-receiver-restart"])
    assert probe.wait(timeout=10) == 0
    _wait(
        lambda: [p for p in receiver.processes() if p["pid"] == probe.pid and p["argv"]]
    )


def test_added_binary_in_a_container_is_a_finding_end_to_end(
    bpf_required: None,
    agents: AgentFactory,
    receiver: Receiver,
    container: Container,
) -> None:
    _start_agent(agents, receiver, "--enable-all")
    time.sleep(1.0)
    container.run("/bin/cp /bin/true /tmp/dropped && /tmp/dropped finding")

    def finding() -> dict[str, Any] | None:
        found = receiver.get(
            f"/api/v1/findings?vm={VM}&kind=added_binary_executed&limit=1000"
        )["items"]
        return found[0] if found else None

    hit = _wait(finding)
    process = receiver.get(f"/api/v1/vms/{VM}/processes/{hit['process_uuid']}")
    assert process["argv"] == ["/tmp/dropped", "finding"]
    assert process["binary_layer"] == "added"
    writer = receiver.get(
        f"/api/v1/vms/{VM}/processes/{hit['details']['written_by_uuid']}"
    )
    assert writer["argv"][0] == "/bin/cp"
