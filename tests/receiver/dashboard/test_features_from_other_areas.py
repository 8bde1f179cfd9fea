"""Pages over endpoints that other areas provide: findings (detections),
configuration push and roles, and the live stream (API). Every one of them
exists, so a 404 fails these tests like any other wrong answer."""

import asyncio
import re

from playwright.async_api import expect

from tests.conftest import TEST_TOKEN, RunningReceiver, read_vector
from tests.receiver.dashboard.conftest import Browser
from tests.receiver.dashboard.guests import AnsweringGuest
from tests.receiver.helpers import stream_and_store, vm_state, wait_for

KIT_UUID = "0100ed5e001b8168a7fc7a1886030000"
VIEWER_TOKEN = "test-viewer-token"
FOUR_KINDS = {
    "added binary executed",
    "added library loaded",
    "reverse shell",
    "exec session started",
}


async def _findings_count(running: RunningReceiver) -> int:
    return len((await running.get("/api/v1/findings", vm="vm-a"))["items"])


async def test_findings_page_shows_the_four_findings_and_links_to_processes(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    for _ in range(200):
        if await _findings_count(running) >= 4:
            break
        await asyncio.sleep(0.05)

    await page.goto(f"{running.api_url}/#token={TEST_TOKEN}&/findings")
    rows = page.locator("#findings-panel tr.finding-row")
    await expect(rows).to_have_count(4)
    kinds = set(await page.locator(".finding-kind").all_inner_texts())
    assert kinds == FOUR_KINDS
    await browser.shot("findings")

    await page.select_option("#findings-kind", "added_binary_executed")
    await expect(rows).to_have_count(1)
    await rows.first.locator("a.process-link").click()
    await expect(page).to_have_url(re.compile(f"/process/{KIT_UUID}$"))
    await expect(page.locator("#process-binary")).to_have_text("/tmp/kit")
    await expect(page.locator("#process-findings tbody tr")).to_have_count(2)
    browser.assert_clean(TEST_TOKEN)


async def test_viewer_cannot_push_configuration_and_operator_sees_the_answer(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running = dashboard_receiver
    running.service.tokens.add(VIEWER_TOKEN, role="viewer", label="viewer")
    guest = AnsweringGuest(running.sockets["vm-a"], message="applied by test guest")
    await guest.start()
    try:
        state = vm_state(running, "vm-a")
        await wait_for(lambda: bool(state.sessions), "vm-a connected")

        viewer = browser.page
        await viewer.goto(f"{running.api_url}/#token={VIEWER_TOKEN}&/vm/vm-a")
        await expect(viewer.locator("#config-readonly")).to_be_visible()
        await expect(viewer.locator("#config-push")).to_have_count(0)
        await expect(viewer.locator("#cfg-argv-limit")).to_be_disabled()
        await expect(viewer.locator("#who")).to_contain_text("viewer")
        refused = await viewer.evaluate(
            """async () => {
              const token = sessionStorage.getItem('csm.token');
              const response = await fetch('/api/v1/vms/vm-a/config', {
                method: 'PUT',
                headers: {Authorization: 'Bearer ' + token,
                          'Content-Type': 'application/json'},
                body: JSON.stringify({execute_config: {enabled: true}})});
              return response.status;
            }"""
        )
        assert refused == 403
        await browser.shot("vm-config-viewer", full_page=True)

        operator = await browser.context.new_page()
        await operator.goto(f"{running.api_url}/#token={TEST_TOKEN}&/vm/vm-a")
        await expect(operator.locator("#config-push")).to_be_enabled()
        await operator.check("#cfg-execute")
        await operator.fill("#cfg-argv-limit", "2048")
        await operator.click("#config-push")
        answer = operator.locator("#config-answer")
        await expect(answer).to_contain_text("Guest answered", timeout=15_000)
        await expect(answer).to_contain_text("applied by test guest")
        assert guest.requests[-1].execute_config.argv_limit == 2048
        browser.page = operator
        await browser.shot("vm-config-operator", full_page=True)
    finally:
        await guest.stop()


async def test_live_tail_shows_events_as_they_are_stored(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await page.goto(f"{running.api_url}/#token={TEST_TOKEN}&/live")
    await expect(page.locator("#tail-state")).to_have_text("live")
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    # The vector's 13 events, and the four findings detection makes of them.
    await expect(page.locator("#tail .line.event")).to_have_count(13)
    await expect(page.locator("#tail .line.finding")).to_have_count(4)
    await expect(page.locator("#tail")).to_contain_text("vm-a")
    kit = page.locator("#tail .line.finding", has_text="added binary executed")
    await expect(kit).to_contain_text("/tmp/kit")
    await browser.shot("live")
    await kit.locator(".what a").click()
    await expect(page.locator("#process-binary")).to_have_text("/tmp/kit")
    browser.assert_clean(TEST_TOKEN)
