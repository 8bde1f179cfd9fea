"""The full path: collector over a Unix socket to the receiver's hybrid listener,
checked through the receiver's REST API."""

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.guest_lsm.conftest import AgentFactory, Container
from tests.guest_lsm.realhost import VM, Receiver, start_agent, wait_until

pytestmark = pytest.mark.root

PIPELINE = "/bin/sleep 0.4 | /usr/bin/tr a-z A-Z > /dev/null"


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
    start_agent(agents, receiver, "--config-file", str(_allowlist_config(tmp_path)))
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

    found = wait_until(family)
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
    start_agent(agents, receiver, "--enable-all")
    time.sleep(1.0)
    container.run("/bin/cp /bin/true /tmp/added-true && /tmp/added-true full-path")

    def added() -> dict[str, Any] | None:
        procs = receiver.processes()
        hits = [p for p in procs if p["argv"] == ["/tmp/added-true", "full-path"]]
        return {"added": hits[0], "all": procs} if hits else None

    found = wait_until(added)
    proc = found["added"]
    writer = [p for p in found["all"] if p["argv"] and p["argv"][0] == "/bin/cp"]
    assert proc["container_id"] != 0
    assert proc["binary_layer"] == "added"
    assert proc["binary_written_by"] == writer[0]["uuid"]


def test_receiver_restart_agent_reconnects_and_goes_on(
    bpf_required: None, agents: AgentFactory, receiver: Receiver
) -> None:
    start_agent(agents, receiver, "--enable-all")
    receiver.stop(signal.SIGKILL)
    subprocess.run(["/bin/true", "while-receiver-down"], check=True)
    receiver.guest_socket.unlink(missing_ok=True)
    receiver.start()
    wait_until(lambda: receiver.get(f"/api/v1/vms/{VM}").get("connected"))
    probe = subprocess.Popen(["/bin/true", "after-receiver-restart"])
    assert probe.wait(timeout=10) == 0
    wait_until(
        lambda: [p for p in receiver.processes() if p["pid"] == probe.pid and p["argv"]]
    )


def test_added_binary_in_a_container_is_a_finding_end_to_end(
    bpf_required: None,
    agents: AgentFactory,
    receiver: Receiver,
    container: Container,
) -> None:
    start_agent(agents, receiver, "--enable-all")
    time.sleep(1.0)
    container.run("/bin/cp /bin/true /tmp/dropped && /tmp/dropped finding")

    def finding() -> dict[str, Any] | None:
        found = receiver.get(
            f"/api/v1/findings?vm={VM}&kind=added_binary_executed&limit=1000"
        )["items"]
        return found[0] if found else None

    hit = wait_until(finding)
    process = receiver.get(f"/api/v1/vms/{VM}/processes/{hit['process_uuid']}")
    assert process["argv"] == ["/tmp/dropped", "finding"]
    assert process["binary_layer"] == "added"
    writer = receiver.get(
        f"/api/v1/vms/{VM}/processes/{hit['details']['written_by_uuid']}"
    )
    assert writer["argv"][0] == "/bin/cp"
