"""The fleet page over a fleet of two hosts: every VM shows, with what the
summary says of it, and each refresh is one request for the whole fleet,
not one per VM."""

import asyncio
import itertools

from playwright.async_api import Request, expect

from bench.fleet_summary import FINDINGS_PER_VM, seed_receiver, seed_remote_vms
from tests.conftest import TEST_TOKEN, RunningReceiver, read_vector
from tests.receiver.dashboard.conftest import Browser
from tests.receiver.helpers import stream_and_store

SUMMARY_PATH = "/api/v1/fleet/summary"
OTHER_HOST = "hv-other"
REMOTE_VMS = [f"remote-{n}" for n in range(6)]
# The page refreshes every 2 s; each refresh must be a single request.
REFRESHES = 3
MIN_REFRESH_GAP_S = 1.5
REFRESH_TIMEOUT_S = 15.0


async def _findings_of(running: RunningReceiver, vm: str, count: int) -> None:
    for _ in range(200):
        body = await running.get("/api/v1/findings", vm=vm)
        if len(body["items"]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{vm} has fewer than {count} findings")


async def test_fleet_page_shows_both_hosts_with_one_request_per_refresh(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    await _findings_of(running, "vm-a", 4)
    await seed_receiver(running.service.engine, OTHER_HOST)
    await seed_remote_vms(running.service.engine, OTHER_HOST, REMOTE_VMS)

    loop = asyncio.get_running_loop()
    api_requests: list[tuple[float, str]] = []

    def on_request(request: Request) -> None:
        if "/api/" in request.url:
            api_requests.append((loop.time(), request.url))

    page.on("request", on_request)
    await page.goto(f"{running.api_url}/#token={TEST_TOKEN}&/fleet")
    rows = page.locator("#fleet-panel tbody tr")
    await expect(rows).to_have_count(2 + len(REMOTE_VMS))
    local = page.locator("#fleet-panel tbody tr", has_text="vm-a")
    await expect(local).to_contain_text(running.service.settings.host)
    await expect(local.locator(".protocol")).to_have_text("v1")
    await expect(local.locator("a.pill.bad")).to_have_text("4")
    remote = page.locator("#fleet-panel tbody tr", has_text="remote-0")
    await expect(remote).to_contain_text(OTHER_HOST)
    await expect(remote).to_contain_text("healthy")
    await expect(remote).to_contain_text("guest overflow \u00d72")
    await expect(remote.locator("a.pill.bad")).to_have_text(str(FINDINGS_PER_VM))
    stats = page.locator("#fleet-stats")
    await expect(stats).to_contain_text(f"{len(REMOTE_VMS)} / {2 + len(REMOTE_VMS)}")
    await expect(stats).to_contain_text("2 / 2")  # hosts running
    await browser.shot("fleet-two-hosts")

    # Watch a few refreshes from here on.
    start = len(api_requests)
    deadline = loop.time() + REFRESH_TIMEOUT_S
    while sum(SUMMARY_PATH in url for _, url in api_requests[start:]) < REFRESHES:
        assert loop.time() < deadline, api_requests[start:]
        await asyncio.sleep(0.1)
    watched = api_requests[start:]
    assert [url for _, url in watched if SUMMARY_PATH not in url] == []
    times = [at for at, _ in watched]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= MIN_REFRESH_GAP_S, gaps

    # Nothing on this page ever asked for a VM on its own.
    per_vm = [url for _, url in api_requests if "/api/v1/vms/" in url]
    assert per_vm == []
    browser.assert_clean(TEST_TOKEN)


async def test_a_vm_name_on_two_hosts_opens_the_one_clicked(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    await seed_receiver(running.service.engine, OTHER_HOST)
    await seed_remote_vms(running.service.engine, OTHER_HOST, ["vm-a"])
    vm_requests: list[str] = []
    page.on(
        "request",
        lambda request: (
            vm_requests.append(request.url)
            if "/api/v1/vms/vm-a" in request.url
            else None
        ),
    )
    await page.goto(f"{running.api_url}/#token={TEST_TOKEN}&/fleet")
    twins = page.locator("#fleet-panel tbody tr", has_text="vm-a")
    await expect(twins).to_have_count(2)

    remote = page.locator("#fleet-panel tbody tr", has_text=OTHER_HOST)
    await remote.locator("a.vm-link").click()
    await expect(page.locator("#vm-host")).to_have_text(OTHER_HOST)
    await expect(page.locator("#vm-boots tbody tr")).to_have_count(2)
    assert vm_requests and all(f"host={OTHER_HOST}" in url for url in vm_requests)

    # The local twin, from the fleet page again, is the web pod's VM.
    await page.goto(f"{running.api_url}/#/fleet")
    local = page.locator("#fleet-panel tbody tr", has_text="test-host")
    await local.locator("a.vm-link", has_text="vm-a").click()
    await expect(page.locator("#vm-host")).to_have_text("test-host")
    await expect(page.locator("#vm-containers")).to_contain_text("web-7d4b9c-x2x8q")
