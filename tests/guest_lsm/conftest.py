"""Fixtures for the guest collector: the real kernel, a host listener, a container."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.guest_lsm.hostsim import HostSim

if TYPE_CHECKING:
    from tests.guest_lsm.realhost import Receiver

OUR_PROGRAMS = {
    "tp_exec",
    "tp_exit",
    "tp_sys_enter",
    "tp_sys_exit",
    "shared_fork",
    "lsm_exec",
    "lsm_task_free",
    "lsm_mmap_file",
    "lsm_file_mprote",
    "lsm_file_releas",
}
BTF = Path("/sys/kernel/btf/vmlinux")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CHROOT = shutil.which("chroot", path=SYSTEM_PATH) or "/usr/sbin/chroot"
AGENT_START_TIMEOUT_S = 60.0
CONTAINER_TOOLS = ("sh", "true", "cat", "cp", "sleep", "echo", "env", "tr", "ls")
CONTAINER_LIBS = ("/lib/x86_64-linux-gnu/libdl.so.2",)


def bpf_skip_reason() -> str | None:
    """Why BPF tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to load BPF programs"
    if not BTF.exists():
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
    for tool in ("clang-14", "bpftool"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            return f"{tool} is missing; run guest_lsm/install-deps.sh"
    return None


def our_programs() -> set[str]:
    """Names of our BPF programs still loaded in the kernel."""
    bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin")
    if bpftool is None:
        return set()
    out = subprocess.run(
        [bpftool, "prog", "list"], capture_output=True, text=True, check=True
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if "name" in parts:
            names.add(parts[parts.index("name") + 1])
    return names & OUR_PROGRAMS


def assert_nothing_attached(timeout_s: float = 10.0) -> None:
    """Wait for the kernel to release our programs (it frees them lazily)."""
    deadline = time.monotonic() + timeout_s
    left = our_programs()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = our_programs()
    assert not left, f"BPF programs left attached: {sorted(left)}"


@pytest.fixture(scope="session")
def bpf_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build cache shared by the session (the object builds once)."""
    return tmp_path_factory.mktemp("bpf-build")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostSim]:
    """A Unix-socket host that records what the agent sends."""
    sim = HostSim(tmp_path / "host.sock")
    yield sim
    sim.close()


@dataclass
class AgentProcess:
    """A ``csm-guest run`` subprocess and how to talk to it."""

    process: subprocess.Popen[bytes]
    control: Path
    log: Path
    args: list[str] = field(default_factory=list)

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a ``csm-guest`` subcommand against this agent."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "guest_lsm.cli",
                *argv,
                "--control",
                str(self.control),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> int:
        """SIGTERM the agent and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class AgentFactory:
    """Starts agents for a test and stops them afterwards."""

    def __init__(self, tmp_path: Path, build_dir: Path) -> None:
        self.tmp_path = tmp_path
        self.build_dir = build_dir
        self.started: list[AgentProcess] = []

    def start(
        self, host: HostSim, backend: str = "tracepoint", *extra: str
    ) -> AgentProcess:
        """Start an agent dialling ``host`` and wait until it has enumerated."""
        index = len(self.started)
        control = self.tmp_path / f"control{index}.sock"
        log = self.tmp_path / f"agent{index}.log"
        argv = [
            sys.executable,
            "-m",
            "guest_lsm.cli",
            "run",
            "--unix",
            str(host.path),
            "--backend",
            backend,
            "--control",
            str(control),
            "--build-dir",
            str(self.build_dir),
            "--log-level",
            "DEBUG",
            *extra,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        agent = AgentProcess(process, control, log, argv)
        self.started.append(agent)
        connections = host.connections
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"agent exited early:\n{log.read_text()}")
            if host.connections > connections and host.heartbeats(host.connections):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"agent never connected:\n{log.read_text()}")
        # Enumeration happens at connect, after the kernel side is attached.
        time.sleep(0.5)
        return agent

    def stop_all(self) -> None:
        """Stop every agent; each must exit cleanly."""
        for agent in self.started:
            status = agent.stop()
            assert status == 0, f"agent exited {status}:\n{agent.log.read_text()}"


@pytest.fixture
def agents(tmp_path: Path, bpf_build_dir: Path) -> Iterator[AgentFactory]:
    """Start agents; after the test they are stopped and nothing stays attached."""
    factory = AgentFactory(tmp_path, bpf_build_dir)
    try:
        yield factory
    finally:
        factory.stop_all()
        assert_nothing_attached()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator["Receiver"]:
    """A real ``csm-receiver serve`` with SQLite under the test's directory.

    It stands in for the in-process ``receiver`` of the top-level conftest:
    the guest's tests want the real command, restartable and killable.
    """
    from tests.guest_lsm.realhost import Receiver, free_port

    running = Receiver(
        uds=tmp_path / "vm",
        data_dir=tmp_path / "var",
        port=free_port(),
        log=tmp_path / "receiver.log",
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def bpf_required() -> None:
    """Skip unless BPF can be loaded here."""
    reason = bpf_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def root_required() -> None:
    """Skip unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (netlink proc connector, mounts, namespaces)")


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        for token in line.split():
            if token.startswith("/"):
                found.append(token)
    return found


def _copy_into(root: Path, source: str, target: str | None = None) -> None:
    destination = root / (target or source).lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(source), destination)


@dataclass
class Container:
    """An overlay root with its layers, for running processes in a new pid ns."""

    lower: Path
    upper: Path
    merged: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, script: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """Run a shell script as the init of a new pid namespace, chrooted here."""
        process = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                CHROOT,
                str(self.merged),
                "/bin/sh",
                "-c",
                script,
            ],
            start_new_session=True,
            env={"PATH": "/bin", "HOME": "/"},
        )
        self.processes.append(process)
        if wait:
            process.wait(timeout=30)
        return process


@pytest.fixture
def container(tmp_path: Path, root_required: None) -> Iterator[Container]:
    """An overlay mount over a minimal lower rootfs, unmounted afterwards."""
    lower, upper, work, merged = (
        tmp_path / name for name in ("lower", "upper", "work", "merged")
    )
    for path in (lower, upper, work, merged):
        path.mkdir()
    for tool in CONTAINER_TOOLS:
        binary = shutil.which(tool, path="/usr/bin:/bin")
        assert binary is not None, tool
        _copy_into(lower, binary, f"/bin/{tool}")
        for library in _libraries(binary):
            _copy_into(lower, library)
    for library in CONTAINER_LIBS:
        _copy_into(lower, library)
    (lower / "tmp").mkdir()
    (lower / "dev").mkdir()
    os.mknod(lower / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (lower / "etc").mkdir()
    (lower / "etc" / "motd").write_text("image file\n")
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(merged),
        ],
        check=True,
    )
    box = Container(lower, upper, merged)
    try:
        yield box
    finally:
        for process in box.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        subprocess.run(["umount", str(merged)], check=False)
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", str(merged)], check=False)
