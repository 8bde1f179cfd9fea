"""``csm-receiver demo``: the service on SQLite with a simulated fleet
feeding it, so the dashboard shows live data at once."""

import asyncio
import dataclasses
import logging
import signal

from bench.simulate import FleetRun, SimTarget, run_fleet
from receiver.service import Service
from receiver.settings import Settings, VmSpec

log = logging.getLogger(__name__)

DEMO_VMS = ("web-1", "web-2", "build-1")
DEMO_RATE_PER_VM = 20.0
# A simulated guest that ends (it never should) comes back after this.
RESTART_DELAY_S = 5.0


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with a few hybrid VMs under the data dir, unless given."""
    if settings.vms:
        return settings
    sockets = settings.data_dir / "demo-vms"
    sockets.mkdir(parents=True, exist_ok=True)
    vms = tuple(
        VmSpec(name, "hybrid", uds_path=str(sockets / f"{name}.vsock"))
        for name in DEMO_VMS
    )
    return dataclasses.replace(settings, vms=vms, no_vsock=True)


async def _feed(targets: list[SimTarget], seed: int) -> None:
    while True:
        run = FleetRun(
            events_per_vm=None,
            rate_per_vm=DEMO_RATE_PER_VM,
            seed=seed,
            real_time=True,
        )
        try:
            await run_fleet(targets, run)
        except OSError as exc:
            log.warning("simulated fleet disconnected: %s", exc)
        await asyncio.sleep(RESTART_DELAY_S)
        seed += 1


async def run_demo(settings: Settings) -> None:
    """Serve with a simulated fleet until SIGINT or SIGTERM."""
    settings = demo_settings(settings)
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await service.start()
    targets = [
        SimTarget(vm.name, str(vm.uds_path), settings.port)
        for vm in settings.vms
        if vm.uds_path is not None
    ]
    feeder = asyncio.create_task(_feed(targets, seed=1), name="demo-fleet")
    log.info("demo: %d simulated VMs feeding the receiver", len(targets))
    try:
        await stop.wait()
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await service.stop()
