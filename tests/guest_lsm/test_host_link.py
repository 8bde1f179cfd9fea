"""Configuration, reconnects, local control and clean detaching."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from csm_wire.codec import FrameDecoder
from csm_wire.gen import schema_pb2 as pb
from csm_wire.messages import EventMessage, decode_guest_frame
from guest_lsm.kernel.backend import Backend
from guest_lsm.kernel.build import build_object
from guest_lsm.kernel.loader import BpfSource
from tests.guest_lsm.conftest import AgentFactory, assert_nothing_attached, our_programs
from tests.guest_lsm.hostsim import HostSim, execs_by_argv0, processes_of

pytestmark = pytest.mark.root


def _argv_seen(host: HostSim, marker: bytes, since: int = 0) -> list[pb.Process]:
    return [
        p
        for p in processes_of(host.events(since), "execute")
        if marker in b" ".join(p.args.argv) or marker in p.binary.fullpath
    ]


def test_config_push_changes_what_is_sent_and_is_answered(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    host.send_config(
        pb.ConfigurationRequest(
            execute_config=pb.ExecuteCollectorConfig(
                enabled=True, argv_limit=8, envp_limit=64, envp_allowlist=["LANG"]
            )
        )
    )
    host.wait_for(host.responses)
    (response,) = host.responses()
    assert response.response.error == pb.ConfigurationResponse.NO_ERROR
    assert not response.legacy_type
    assert response.response.version == 1

    runner = subprocess.run(
        ["/bin/echo", "abcdefghij"],
        env={"LANG": "C", "FOO": "bar"},
        capture_output=True,
    )
    assert runner.returncode == 0
    host.wait_for(
        lambda: execs_by_argv0(processes_of(host.events(), "execute"), b"/bin/ec")
    )
    (echo,) = execs_by_argv0(processes_of(host.events(), "execute"), b"/bin/ec")
    assert echo.args.argv_truncated > 0
    assert list(echo.args.envp) == [b"LANG=C"]
    assert not [m for m in processes_of(host.events(), "memexec") if m.pid == echo.pid]

    # An empty request turns every collector off.
    host.send_config(pb.ConfigurationRequest())
    host.wait_for(lambda: len(host.responses()) == 2)
    seen = len(host.events())
    subprocess.run(["/bin/true", "after-off"], check=True)
    time.sleep(1.0)
    assert not [e for e in host.events()[seen:] if e.HasField("execute")]


def test_local_config_wins_and_the_host_hears_of_it(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agent = agents.start(host, "tracepoint", "--enable-all")
    result = agent.cli("config", "--argv-limit", "5")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["argv_limit"] == 5
    notice = host.wait_for(host.responses)
    assert isinstance(notice, list)
    assert "local configuration change" in notice[0].response.msg
    probe = subprocess.Popen(["/bin/true", "local-limit"])
    assert probe.wait(timeout=10) == 0
    limited = host.wait_for(
        lambda: [
            p for p in processes_of(host.events(), "execute") if p.pid == probe.pid
        ]
    )
    assert isinstance(limited, list)
    assert list(limited[0].args.argv) == [b"/bin"]
    stats = json.loads(agent.cli("stats").stdout)
    assert stats["backend"] == "tracepoint"
    assert stats["connected"] is True
    assert stats["agent"]["events_encoded"] > 0


def test_receiver_restart_reconnects_and_re_enumerates(
    bpf_required: None, agents: AgentFactory, tmp_path: Path
) -> None:
    path = tmp_path / "restart.sock"
    first = HostSim(path)
    # Plain v1 loses what happens while the host is away.
    agent = agents.start(first, "tracepoint", "--enable-all", "--protocol", "v1")
    own = [p for p in processes_of(first.events(), "enumproc") if p.pid == os.getpid()]
    assert own, "the test process was not enumerated"
    first.close()

    subprocess.run(["/bin/true", "while-down"], check=True)
    time.sleep(0.5)
    second = HostSim(path)
    try:
        second.wait_for(lambda: second.heartbeats(1), timeout_s=20)
        second.wait_for(
            lambda: [
                p
                for p in processes_of(second.events(), "enumproc")
                if p.pid == os.getpid()
            ]
        )
        again = [
            p for p in processes_of(second.events(), "enumproc") if p.pid == os.getpid()
        ]
        assert again[0].uuid == own[0].uuid
        subprocess.run(["/bin/true", "after-restart"], check=True)
        second.wait_for(lambda: _argv_seen(second, b"after-restart"))
        assert not _argv_seen(second, b"while-down")
        stats = json.loads(agent.cli("stats").stdout)
        assert stats["agent"]["connects"] == 2
        assert stats["agent"]["drops"]["disconnected"] > 0
    finally:
        second.close()


def test_heartbeats_keep_coming(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agents.start(host, "tracepoint", "--heartbeat-s", "0.2")
    host.wait_for(lambda: host.heartbeats(1) >= 5, timeout_s=10)


def test_local_reader_gets_the_same_frames(
    bpf_required: None, agents: AgentFactory, host: HostSim, tmp_path: Path
) -> None:
    stream = tmp_path / "stream.sock"
    agents.start(host, "tracepoint", "--enable-all", "--local-stream", str(stream))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as reader:
        reader.connect(str(stream))
        reader.settimeout(10)
        time.sleep(0.2)
        subprocess.run(["/bin/true", "for-the-local-reader"], check=True)
        decoder = FrameDecoder()
        found = False
        deadline = time.monotonic() + 10
        while not found and time.monotonic() < deadline:
            for frame in decoder.feed(reader.recv(65536)):
                message = decode_guest_frame(frame)
                if isinstance(message, EventMessage) and message.event.HasField(
                    "execute"
                ):
                    found = (
                        b"for-the-local-reader" in message.event.execute.proc.args.argv
                    )
                    if found:
                        break
        assert found


def test_everything_is_detached_after_an_exception(
    bpf_required: None, bpf_build_dir: Path
) -> None:
    path = build_object(bpf_build_dir)
    with (
        pytest.raises(RuntimeError),
        BpfSource(str(path), Backend.AUTO, lambda _e: None),
    ):
        assert our_programs(), "nothing was attached"
        raise RuntimeError("boom")
    assert_nothing_attached()
