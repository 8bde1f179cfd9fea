"""Protocol v2 from the guest: negotiation, replay after a crash, loss reports,
and the fallback to v1, against the real receiver over its hybrid socket."""

import json
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.guest_lsm.conftest import AgentFactory
from tests.guest_lsm.hostsim import HostSim, processes_of
from tests.guest_lsm.realhost import VM, Receiver, start_agent, wait_until

pytestmark = pytest.mark.root

HELLO_FRAME_TYPE = 64


def _vm(receiver: Receiver) -> Any:
    return receiver.get(f"/api/v1/vms/{VM}")


def _events(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query = f"/api/v1/events?vm={VM}&type={kind}&limit=1000"
    page = receiver.get(query)
    items.extend(page["items"])
    while page.get("next"):
        page = receiver.get(f"{query}&cursor={page['next']}")
        items.extend(page["items"])
    return items


def _with_argv(procs: list[dict[str, Any]], argv: list[str]) -> list[dict[str, Any]]:
    return [p for p in procs if p["argv"] == argv]


def _burst(marker: str, count: int) -> subprocess.Popen[bytes]:
    script = f'i=0; while [ "$i" -lt {count} ]; do /bin/true {marker}; i=$((i+1)); done'
    return subprocess.Popen(["/bin/sh", "-c", script])


def _gaps(receiver: Receiver) -> list[dict[str, Any]]:
    return list(receiver.get(f"/api/v1/vms/{VM}/gaps?limit=1000")["items"])


def _restart(receiver: Receiver) -> None:
    receiver.guest_socket.unlink(missing_ok=True)
    receiver.start()


def test_agent_negotiates_v2_sends_counters_and_exit_status(
    bpf_required: None, agents: AgentFactory, receiver: Receiver
) -> None:
    start_agent(agents, receiver, "--enable-all", "--counters-s", "0.5")
    wait_until(lambda: _vm(receiver)["protocol"] == "v2")
    shell = subprocess.Popen(["/bin/sh", "-c", "exit 3"])
    assert shell.wait(timeout=10) == 3

    def exit_of_shell() -> dict[str, Any] | None:
        procs = [p for p in receiver.processes() if p["pid"] == shell.pid]
        if not procs or not procs[0]["exited_at"]:
            return None
        uuid = procs[0]["uuid"]
        exits = [e for e in _events(receiver, "exit") if e["process_uuid"] == uuid]
        return exits[0] if exits else None

    found = wait_until(exit_of_shell)
    # The wait(2) status: exit code 3 in the high byte.
    assert found["event"]["exit"]["exit_status"] == 3 << 8, found

    counters = wait_until(
        lambda: (_vm(receiver)["delivery"].get("guest_counters") or {}).get(
            "events_acked"
        )
    )
    assert int(counters) > 0
    stats = json.loads(agents.started[0].cli("stats").stdout)
    assert stats["protocol"] == "v2"
    assert stats["stream"]["acked_seq"] > 0


def test_receiver_killed_mid_burst_every_exec_is_stored_once(
    bpf_required: None, agents: AgentFactory, receiver: Receiver
) -> None:
    start_agent(agents, receiver, "--enable-all")
    wait_until(lambda: _vm(receiver)["protocol"] == "v2")
    count = 600
    argv = ["/bin/true", "v2-burst"]
    shell = _burst("v2-burst", count)

    # Kill the receiver once part of the burst is stored, not before.
    wait_until(lambda: len(_with_argv(receiver.processes(), argv)) >= 20)
    receiver.stop(signal.SIGKILL)
    assert shell.wait(timeout=120) == 0
    _restart(receiver)

    def stored() -> list[dict[str, Any]] | None:
        burst = [
            p
            for p in _with_argv(receiver.processes(), argv)
            if p["parent_pid"] == shell.pid
        ]
        return burst if len(burst) >= count else None

    burst = wait_until(stored, timeout_s=120)
    assert len(burst) == count
    assert len({p["uuid"] for p in burst}) == count
    uuids = {p["uuid"] for p in burst}
    executes = [e for e in _events(receiver, "execute") if e["process_uuid"] in uuids]
    assert len(executes) == count, "an exec was stored twice"
    assert not _gaps(receiver)
    vm = _vm(receiver)
    assert vm["protocol"] == "v2"
    stream = json.loads(agents.started[0].cli("stats").stdout)["stream"]
    # Whether any were replayed depends on where the kill fell; say so.
    print(
        f"burst of {count}: {stream['replayed']} events replayed, "
        f"{vm['delivery'].get('duplicates')} duplicates dropped by the receiver"
    )


def test_replay_buffer_overflow_is_a_guest_overflow_gap(
    bpf_required: None, agents: AgentFactory, receiver: Receiver
) -> None:
    # Room for the enumeration at connect, not for a burst with the host down.
    start_agent(agents, receiver, "--enable-all", "--replay-events", "2000")
    wait_until(lambda: _vm(receiver)["protocol"] == "v2")
    receiver.stop(signal.SIGKILL)
    shell = _burst("v2-overflow", 1500)
    assert shell.wait(timeout=120) == 0
    agent = agents.started[0]
    lost = json.loads(agent.cli("stats").stdout)["stream"]["drops"]
    assert lost.get("replay_buffer_full", 0) > 0, lost
    _restart(receiver)

    def drained() -> bool:
        stream = json.loads(agent.cli("stats").stdout)["stream"]
        return bool(stream["state"] == "v2" and stream["replay_buffer_events"] < 100)

    # Once the replay is acknowledged there is room again for new events.
    wait_until(drained, timeout_s=60)
    probe = subprocess.Popen(["/bin/true", "after-overflow"])
    assert probe.wait(timeout=10) == 0
    wait_until(lambda: [p for p in receiver.processes() if p["pid"] == probe.pid])

    def overflow_gaps() -> list[dict[str, Any]]:
        return [g for g in _gaps(receiver) if g["cause"] == "guest_overflow"]

    def accounted() -> bool:
        # Every lost sequence number is accounted for, once.
        drops = json.loads(agent.cli("stats").stdout)["stream"]["drops"]
        gaps = overflow_gaps()
        return sum(g["count"] for g in gaps) == drops["replay_buffer_full"]

    wait_until(accounted)
    gaps = overflow_gaps()
    assert {g["details"]["guest_cause"] for g in gaps} == {"replay_buffer_full"}


def test_agent_falls_back_to_v1_with_a_v1_host(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agent = agents.start(host, "tracepoint", "--enable-all", "--hello-timeout-s", "1")
    subprocess.run(["/bin/true", "to-a-v1-host"], check=True)
    host.wait_for(
        lambda: [
            p
            for p in processes_of(host.events(), "execute")
            if list(p.args.argv) == [b"/bin/true", b"to-a-v1-host"]
        ]
    )
    assert host.skipped_types == [HELLO_FRAME_TYPE]
    stats = json.loads(agent.cli("stats").stdout)
    assert stats["protocol"] == "v1"
    assert stats["stream"]["state"] == "v1"
    exits = [e.exit for e in host.events() if e.HasField("exit")]
    assert exits and all(e.process_uuid for e in exits)


def test_v1_flag_sends_no_hello(
    bpf_required: None, agents: AgentFactory, host: HostSim
) -> None:
    agent = agents.start(host, "tracepoint", "--enable-all", "--protocol", "v1")
    subprocess.run(["/bin/true", "plain-v1"], check=True)
    host.wait_for(
        lambda: [
            p
            for p in processes_of(host.events(), "execute")
            if list(p.args.argv) == [b"/bin/true", b"plain-v1"]
        ]
    )
    time.sleep(0.5)
    assert host.skipped_types == []
    assert not [e for e in host.events() if e.exit.HasField("exit_status")]
    assert json.loads(agent.cli("stats").stdout)["stream"] is None
