"""The fleet simulator: its manifest proves every simulated process stored."""

import json
import struct
from pathlib import Path

from bench.simulate import FleetRun, SimTarget, run_fleet, write_manifest
from bench.workload import GuestWorkload
from tests.conftest import make_settings, start_receiver, stop_receiver
from tests.receiver.helpers import all_items, vm_state, wait_for

VMS = ["sim-a", "sim-b"]


async def test_every_simulated_process_is_stored(db_url: str, tmp_path: Path) -> None:
    running = await start_receiver(make_settings(tmp_path, db_url, VMS))
    try:
        targets = [
            SimTarget(
                name, str(tmp_path / f"{name}.vsock"), running.service.settings.port
            )
            for name in VMS
        ]
        results = await run_fleet(targets, FleetRun(events_per_vm=1500, seed=7))
        for result in results:
            state = vm_state(running, result.name)
            await wait_for(
                lambda s=state, r=result: s.counters.events >= r.events,
                f"{result.name} events received",
            )
        await running.settle()
        path = tmp_path / "manifest.json"
        write_manifest(path, results)
        manifest = json.loads(path.read_text())

        assert sorted(manifest) == VMS
        for vm, uuids in manifest.items():
            assert len(uuids) > 300
            stored = await all_items(running, f"/api/v1/vms/{vm}/processes", limit=1000)
            assert {p["uuid"] for p in stored} == set(uuids)
            assert sum(vm_state(running, vm).counters.drops.values()) == 0
    finally:
        await stop_receiver(running)


def test_uuids_follow_the_csm_layout() -> None:
    workload = GuestWorkload(3)
    events = workload.events()
    for _ in range(2000):
        next(events)
    machine_ids = set()
    for uuid in workload.uuids:
        assert len(uuid) == 16
        machine_id, start_ns, tgid = struct.unpack("<IQI", uuid)
        assert machine_id != 0
        assert start_ns > 0
        assert 0 < tgid < 4_194_304
        machine_ids.add(machine_id)
    assert machine_ids == {workload.boot.machine_id}
    assert len(set(workload.uuids)) == len(workload.uuids)


def test_a_seed_repeats_the_same_stream() -> None:
    first, second = GuestWorkload("9:vm").events(), GuestWorkload("9:vm").events()
    a = [next(first).SerializeToString() for _ in range(500)]
    b = [next(second).SerializeToString() for _ in range(500)]
    assert a == b
