"""A container made by the test: overlay root, new pid namespace, chroot."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from csm_wire.gen import schema_pb2 as pb
from tests.guest_lsm.conftest import AgentFactory, Container
from tests.guest_lsm.hostsim import HostSim, execs_by_argv0, processes_of

pytestmark = pytest.mark.root

ADDED_LIBRARY = "/lib/x86_64-linux-gnu/libdl.so.2"


def _wait_exec(host: HostSim, argv0: bytes, count: int = 1) -> list[pb.Process]:
    """Execute events in containers; other tenants of the machine run none."""

    def found() -> list[pb.Process] | None:
        procs = [
            p
            for p in execs_by_argv0(processes_of(host.events(), "execute"), argv0)
            if p.container_id
        ]
        return procs if len(procs) >= count else None

    procs = host.wait_for(found)
    assert isinstance(procs, list)
    return procs


def test_container_processes_get_a_container_id(
    bpf_required: None, agents: AgentFactory, host: HostSim, container: Container
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    container.run("/bin/cat /etc/motd > /dev/null; /bin/true inside")
    (shell,) = _wait_exec(host, b"/bin/sh")
    (cat,) = _wait_exec(host, b"/bin/cat")
    (true,) = _wait_exec(host, b"/bin/true")
    assert shell.container_id != 0
    assert shell.container_pid == 1
    assert shell.binary.fullpath == b"/bin/sh"
    assert shell.binary.overlayfs.lower_layer and not shell.binary.overlayfs.upper_layer
    for child in (cat, true):
        assert child.container_id == shell.container_id
        assert child.container_parent_pid == 1
        assert child.exec_session_id == 0
    info = [e.container.container for e in host.events() if e.HasField("container")]
    assert any(c.container_id == shell.container_id for c in info)
    assert any(c.init_uuid == shell.uuid for c in info)


def test_binary_written_in_container_is_added_with_its_writer(
    bpf_required: None, agents: AgentFactory, host: HostSim, container: Container
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    container.run("/bin/cp /bin/true /tmp/added-true && /tmp/added-true")
    assert (container.upper / "tmp" / "added-true").exists()
    (writer,) = _wait_exec(host, b"/bin/cp")
    (added,) = _wait_exec(host, b"/tmp/added-true")
    layer = added.binary.overlayfs
    assert added.binary.fullpath == b"/tmp/added-true"
    assert layer.upper_layer and not layer.lower_layer
    assert layer.modified_uuid == writer.uuid
    assert added.container_id == writer.container_id != 0


def test_modified_image_file_is_on_both_layers(
    bpf_required: None, agents: AgentFactory, host: HostSim, container: Container
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    container.run("/bin/echo >> /bin/true; /bin/true")
    (modified,) = _wait_exec(host, b"/bin/true")
    layer = modified.binary.overlayfs
    assert layer.upper_layer and layer.lower_layer
    (sh,) = _wait_exec(host, b"/bin/sh")
    # The shell itself appended (a builtin echo): it is the first writer.
    assert layer.modified_uuid == sh.uuid


def test_library_written_and_mapped_is_a_memexec_of_an_added_file(
    bpf_required: None, agents: AgentFactory, host: HostSim, container: Container
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    container.run(
        f"/bin/cp {ADDED_LIBRARY} /tmp/added.so && LD_PRELOAD=/tmp/added.so /bin/true"
    )
    (writer,) = _wait_exec(host, b"/bin/cp")

    def mapped() -> list[pb.MemoryExecEvent] | None:
        found = [
            e.memexec
            for e in host.events()
            if e.HasField("memexec")
            and e.memexec.mapped_file.fullpath == b"/tmp/added.so"
        ]
        return found or None

    events = host.wait_for(mapped)
    assert isinstance(events, list)
    memexec = events[0]
    assert memexec.action == pb.MemoryExecEvent.MMAP_FILE
    assert memexec.new_flags & 0x4
    assert memexec.mapped_file.overlayfs.upper_layer
    assert not memexec.mapped_file.overlayfs.lower_layer
    assert memexec.mapped_file.overlayfs.modified_uuid == writer.uuid
    assert memexec.proc.container_id == writer.container_id != 0
    assert memexec.end_addr > memexec.start_addr


def _container_init_pid(unshare_pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text()
        if children.split():
            return int(children.split()[0])
        time.sleep(0.05)
    raise AssertionError("the container's init never started")


def test_nsenter_starts_an_exec_session_shared_by_children(
    bpf_required: None, agents: AgentFactory, host: HostSim, container: Container
) -> None:
    agents.start(host, "tracepoint", "--enable-all")
    running = container.run("/bin/sleep 30", wait=False)
    (sleeper,) = _wait_exec(host, b"/bin/sleep")
    init_pid = _container_init_pid(running.pid)
    subprocess.run(
        [
            "nsenter",
            "-t",
            str(init_pid),
            "-m",
            "-p",
            "-r",
            "/bin/sh",
            "-c",
            "/bin/true session-one; /bin/cat /etc/motd > /dev/null",
        ],
        check=True,
        timeout=20,
        env={"PATH": "/bin"},
    )
    session_shells = [p for p in _wait_exec(host, b"/bin/sh", 2) if p.exec_session_id]
    (session_shell,) = session_shells
    (true,) = _wait_exec(host, b"/bin/true")
    (cat,) = _wait_exec(host, b"/bin/cat")
    assert session_shell.container_id == sleeper.container_id != 0
    assert session_shell.exec_session_id != session_shell.container_id
    for child in (true, cat):
        assert child.container_id == sleeper.container_id
        assert child.exec_session_id == session_shell.exec_session_id
        assert child.parent_uuid == session_shell.uuid
    assert sleeper.exec_session_id == 0


def test_container_metadata_from_oci_bundle_and_local_report(
    bpf_required: None,
    agents: AgentFactory,
    host: HostSim,
    container: Container,
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundles" / "k8s.io" / "abc123"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(
        json.dumps(
            {
                "root": {"path": str(container.merged)},
                "annotations": {
                    "io.kubernetes.cri.sandbox-namespace": "shop",
                    "io.kubernetes.cri.sandbox-name": "cart-7f9",
                    "io.kubernetes.cri.container-name": "cart",
                    "io.kubernetes.cri.image-name": "registry.local/cart:1.2",
                },
            }
        )
    )
    agent = agents.start(
        host, "tracepoint", "--enable-all", "--bundle-root", str(tmp_path / "bundles")
    )
    running = container.run("/bin/sleep 30", wait=False)
    (sleeper,) = _wait_exec(host, b"/bin/sleep")

    def infos() -> list[pb.Container]:
        return [
            e.container.container
            for e in host.events()
            if e.HasField("container")
            and e.container.container.container_id == sleeper.container_id
        ]

    host.wait_for(infos)
    first = infos()[0]
    assert (first.pod_namespace, first.pod_name) == (b"shop", b"cart-7f9")
    assert first.container_name == b"cart"
    assert first.container_image_uri == b"registry.local/cart:1.2"

    result = agent.cli(
        "report-container",
        "--pid",
        str(_container_init_pid(running.pid)),
        "--pod-name",
        "reported-pod",
        "--label",
        "tier=web",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["container_id"] == sleeper.container_id
    host.wait_for(lambda: any(c.pod_name == b"reported-pod" for c in infos()))
    reported = next(c for c in infos() if c.pod_name == b"reported-pod")
    assert list(reported.labels) == [b"tier=web"]
