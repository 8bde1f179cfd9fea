"""Delivery on the dashboard: a v2 guest whose replay buffer overflowed
shows its gap on the fleet page and in the VM page's Gaps panel."""

import re

from playwright.async_api import expect

from bench.v2_guest import V2TestGuest, sample_event
from tests.conftest import TEST_TOKEN, RunningReceiver, read_vector
from tests.receiver.dashboard.conftest import Browser
from tests.receiver.helpers import stream_and_store

MACHINE_B = 0x0B0B0B0B
REPLAY_CAPACITY = 10
PRODUCED = 50


async def _overflowed_v2_guest(running: RunningReceiver) -> V2TestGuest:
    """vm-b's guest produced 50 events while the host was away; 10 fit."""
    guest = V2TestGuest(
        running.sockets["vm-b"], MACHINE_B, replay_capacity_events=REPLAY_CAPACITY
    )
    for n in range(1, PRODUCED + 1):
        guest.produce(sample_event(MACHINE_B, n))
    await guest.start()
    await guest.wait_acked()
    await running.settle()
    return guest


async def test_a_replay_buffer_overflow_shows_as_a_gap(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    guest = await _overflowed_v2_guest(running)
    host = running.service.settings.host
    try:
        await page.goto(f"{running.api_url}/#token={TEST_TOKEN}&/fleet")
        vm_a = page.locator("#fleet-panel tbody tr", has_text="vm-a")
        vm_b = page.locator("#fleet-panel tbody tr", has_text="vm-b")
        await expect(vm_b).to_contain_text("guest overflow \u00d71 · 40 events lost")
        await expect(vm_b.locator(".protocol")).to_have_text("v2")
        await expect(vm_b).to_contain_text(host)
        await expect(vm_a.locator(".protocol")).to_have_text("v1")
        await expect(vm_a).to_contain_text("none")
        await browser.shot("fleet-gaps")

        await vm_b.locator("a.vm-link").click()
        await expect(page).to_have_url(re.compile(r"#/vm/vm-b\?host=test-host$"))
        await expect(page.locator("#vm-protocol")).to_have_text("v2")
        await expect(page.locator("#vm-host")).to_have_text(host)
        gaps = page.locator("#vm-gaps tbody tr")
        await expect(gaps).to_have_count(1)
        cells = gaps.first.locator("td")
        await expect(cells.nth(0)).to_contain_text("guest overflow")
        await expect(cells.nth(0)).to_contain_text("replay buffer full")
        await expect(cells.nth(1)).to_have_text(f"{MACHINE_B:08x}")
        await expect(cells.nth(2)).to_have_text("11\u201350")
        await expect(cells.nth(3)).to_have_text("40")
        await expect(cells.nth(4)).to_contain_text("detected")
        await expect(page.locator("#vm-gaps-count")).to_have_text("guest overflow 1")
        await expect(page.locator("#vm-delivery")).to_contain_text(
            f"boot {MACHINE_B:08x}"
        )
        await expect(page.locator("#vm-delivery")).to_contain_text("acked 50")
        await browser.shot("vm-gaps", full_page=True)

        # A v1 VM with nothing lost says so instead of an empty table.
        await page.goto(f"{running.api_url}/#/vm/vm-a")
        await expect(page.locator("#vm-gaps")).to_contain_text("No gaps")
        await expect(page.locator("#vm-protocol")).to_have_text("v1")
    finally:
        await guest.stop()
    browser.assert_clean(TEST_TOKEN)
