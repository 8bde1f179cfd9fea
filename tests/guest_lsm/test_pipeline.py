"""A known shell pipeline, run by the test, arrives as it happened."""

import json
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from csm_wire.gen import schema_pb2 as pb
from tests.guest_lsm.conftest import AgentFactory
from tests.guest_lsm.hostsim import HostSim, execs_by_argv0, exits_of, processes_of

pytestmark = pytest.mark.root

PIPELINE = "/bin/sleep 0.4 | /usr/bin/tr a-z A-Z > /dev/null"
PIPELINE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "CSM_SECRET": "hunter2"}


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


def _run_pipeline(host: HostSim) -> tuple[int, list[pb.Event]]:
    shell = subprocess.Popen(["/bin/sh", "-c", PIPELINE], env=PIPELINE_ENV)
    assert shell.wait(timeout=10) == 0

    def finished() -> list[pb.Event] | None:
        events = host.events()
        uuids = [p.uuid for p in processes_of(events, "execute") if p.pid == shell.pid]
        return events if uuids and uuids[0] in exits_of(events) else None

    events = host.wait_for(finished)
    assert isinstance(events, list)
    return shell.pid, events


def _check_pipeline(shell_pid: int, events: list[pb.Event]) -> None:
    execs = processes_of(events, "execute")
    (shell,) = [p for p in execs if p.pid == shell_pid]
    assert list(shell.args.argv) == [b"/bin/sh", b"-c", PIPELINE.encode()]
    assert shell.binary.fullpath == b"/usr/bin/dash"
    assert set(shell.args.envp) == {b"PATH=/usr/bin:/bin", b"LANG=C"}

    # Other tenants of the machine exec too: keep the shell's children.
    children = [p for p in execs if p.parent_pid == shell_pid]
    (sleeper,) = execs_by_argv0(children, b"/bin/sleep")
    (upper,) = execs_by_argv0(children, b"/usr/bin/tr")
    assert list(sleeper.args.argv) == [b"/bin/sleep", b"0.4"]
    assert list(upper.args.argv) == [b"/usr/bin/tr", b"a-z", b"A-Z"]
    for child in (sleeper, upper):
        assert child.parent_pid == shell_pid
        assert child.parent_uuid == shell.uuid
        assert not any(env.startswith(b"CSM_SECRET=") for env in child.args.envp)

    # The pipe joins the two: the same FIFO inode on both sides.
    assert stat.S_ISFIFO(sleeper.streams.stdout.mode)
    assert stat.S_ISFIFO(upper.streams.stdin.mode)
    assert sleeper.streams.stdout.file.ino == upper.streams.stdin.file.ino
    assert upper.streams.stdout.file.fullpath == b"/dev/null"

    clones = {p.uuid: p for p in processes_of(events, "clone")}
    exited = exits_of(events)
    for proc in (shell, sleeper, upper):
        assert proc.uuid in exited
    for child in (sleeper, upper):
        assert clones[child.uuid].parent_uuid == shell.uuid


def test_pipeline_arrives_with_pids_argv_env_streams_and_exits(
    bpf_required: None, agents: AgentFactory, host: HostSim, tmp_path: Path
) -> None:
    agents.start(host, "tracepoint", "--config-file", str(_allowlist_config(tmp_path)))
    shell_pid, events = _run_pipeline(host)
    _check_pipeline(shell_pid, events)


def test_auto_backend_falls_back_to_tracepoints_and_says_so(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agent = agents.start(host, "auto", "--enable-all")
    stats = json.loads(agent.cli("stats").stdout)
    log = agent.log.read_text()
    assert stats["backend"] in ("lsm", "tracepoint")
    if stats["backend"] == "tracepoint":
        assert "refuses BPF LSM programs" in log
    assert f"running with the {stats['backend']} backend" in log


def test_short_lived_process_keeps_its_argv(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    runs = [subprocess.run(["/bin/true", f"marker-{i}"]) for i in range(20)]
    assert all(run.returncode == 0 for run in runs)

    def all_seen() -> bool:
        argvs = {tuple(p.args.argv) for p in processes_of(host.events(), "execute")}
        return all((b"/bin/true", f"marker-{i}".encode()) in argvs for i in range(20))

    host.wait_for(all_seen)


def test_shell_with_tcp_stdin_shows_socket_addresses(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            shell = subprocess.Popen(
                ["/bin/sh", "-c", "exit 0"],
                stdin=client.fileno(),
                stdout=client.fileno(),
            )
            assert shell.wait(timeout=10) == 0
            local_port = client.getsockname()[1]
            server_port = server.getsockname()[1]

    def shell_exec() -> pb.Process | None:
        found = [
            p for p in processes_of(host.events(), "execute") if p.pid == shell.pid
        ]
        return found[0] if found else None

    proc = host.wait_for(shell_exec)
    assert isinstance(proc, pb.Process)
    for stream in (proc.streams.stdin, proc.streams.stdout):
        assert stat.S_ISSOCK(stream.mode)
        ends = stream.file.socket
        assert ends.local.family == socket.AF_INET
        assert ends.local.ip == socket.inet_aton("127.0.0.1")
        assert ends.local.port == local_port
        assert ends.remote.ip == socket.inet_aton("127.0.0.1")
        assert ends.remote.port == server_port


def test_proc_connector_fallback_passes_the_pipeline_and_states_its_limits(
    root_required: None,
    agents: AgentFactory,
    host: HostSim,
    tmp_path: Path,
) -> None:
    agent = agents.start(
        host, "proc", "--config-file", str(_allowlist_config(tmp_path))
    )
    shell_pid, events = _run_pipeline(host)
    _check_pipeline(shell_pid, events)
    log = agent.log.read_text()
    assert "proc connector backend" in log
    assert "short-lived processes lose them" in log
    assert not processes_of(events, "memexec")


def test_exec_burst_arrives_whole_with_no_drops(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agent = agents.start(host, "tracepoint", "--enable-all")
    count = 1000
    script = f'i=0; while [ "$i" -lt {count} ]; do /bin/true burst; i=$((i+1)); done'
    shell = subprocess.Popen(["/bin/sh", "-c", script])
    assert shell.wait(timeout=60) == 0

    def burst() -> list[pb.Process]:
        return [
            p
            for p in processes_of(host.events(), "execute")
            if p.parent_pid == shell.pid
            and list(p.args.argv) == [b"/bin/true", b"burst"]
        ]

    host.wait_for(lambda: len(burst()) >= count, timeout_s=60)
    stats = json.loads(agent.cli("stats").stdout)
    assert stats["kernel"]["ring_full"] == 0
    # Other processes on this machine may exec before the agent's first
    # connection ("disconnected"); the burst itself must cost no drop.
    drops = dict(stats["agent"]["drops"])
    drops.pop("disconnected", None)
    assert not any(drops.values()), drops
