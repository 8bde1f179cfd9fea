"""The dashboard in real headless Chromium against a receiver fed the
web-pod vector: fleet, VM, tree, search, process detail, sign-in."""

import json
import re

import aiohttp
from playwright.async_api import Route, expect

from tests.conftest import TEST_TOKEN, RunningReceiver, read_vector
from tests.receiver.dashboard.conftest import Browser
from tests.receiver.helpers import stream_and_store

CURL_UUID = "0100ed5e00124468a7fc7a1885030000"
KIT_UUID = "0100ed5e001b8168a7fc7a1886030000"
POD_BINARIES = [
    "/sbin/init",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/nginx",
    "/usr/sbin/nginx",
    "/bin/bash",
    "/bin/sh",
    "/usr/bin/curl",
    "/tmp/kit",
]


MISSING_ENDPOINTS = re.compile(r"/api/v1/(findings|stream)(\?|$)")


async def _answer_404(route: Route) -> None:
    await route.fulfill(
        status=404,
        content_type="application/problem+json",
        body=json.dumps({"title": "Not Found", "status": 404}),
    )


async def _open(browser: Browser, running: RunningReceiver, fragment: str) -> None:
    await browser.page.goto(f"{running.api_url}/#token={TEST_TOKEN}&{fragment}")


async def test_fleet_vm_tree_search_and_writer_link(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))

    await _open(browser, running, "/fleet")
    # The token leaves the address bar at once and lives in session storage.
    await expect(page).to_have_url(re.compile(r"#/fleet$"))
    assert TEST_TOKEN not in page.url
    stored = await page.evaluate("sessionStorage.getItem('csm.token')")
    assert stored == TEST_TOKEN
    fleet = page.locator("#fleet-panel tbody tr")
    await expect(fleet).to_have_count(2)
    await expect(fleet.first).to_contain_text("vm-a")
    await expect(fleet.first).to_contain_text("v1")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "ok")
    await browser.shot("fleet")

    await page.locator("a.vm-link", has_text="vm-a").click()
    await expect(page.locator("#vm-containers")).to_contain_text("web-7d4b9c-x2x8q")
    await expect(page.locator("#vm-containers")).to_contain_text(
        "docker.io/library/nginx:1.27"
    )
    await expect(page.locator("#vm-exec-sessions tbody tr")).to_have_count(1)
    await expect(page.locator("#vm-boots tbody tr")).to_have_count(1)
    await expect(page.locator("#vm-config")).to_contain_text("NO_ERROR")
    await browser.shot("vm", full_page=True)

    await page.locator("#open-tree").click()
    rows = page.locator("#tree-rows .tree-row .bin")
    await expect(rows).to_have_count(len(POD_BINARIES))
    assert await rows.all_inner_texts() == POD_BINARIES
    await browser.shot("tree")

    await page.fill("#tree-search", "kit")
    await expect(page.locator("#tree-rows .tree-row.match")).to_have_count(2)
    await expect(page.locator("#tree-status")).to_contain_text("2 match")
    await browser.shot("tree-search")
    kit_row = page.locator(f"#tree-rows .tree-row[data-uuid='{KIT_UUID}']")
    await expect(kit_row).to_have_class(re.compile(r"\bmatch\b"))
    await kit_row.locator("a.bin").click()

    await expect(page.locator("#process-binary")).to_have_text("/tmp/kit")
    await expect(page.locator("#process-argv")).to_contain_text("--quiet")
    await expect(page.locator("#process-binary-info")).to_contain_text("added")
    writer = page.locator("#writer-link")
    await expect(writer).to_have_text("/usr/bin/curl")
    await expect(page.locator("#written-by")).to_contain_text("pid 901")
    await expect(page.locator("#process-ancestors tbody tr")).to_have_count(3)
    await expect(page.locator("#process-memexecs")).to_contain_text(
        "/tmp/.cache/libhook.so"
    )
    await browser.shot("process", full_page=True)

    await writer.click()
    await expect(page).to_have_url(re.compile(f"/process/{CURL_UUID}$"))
    await expect(page.locator("#process-binary")).to_have_text("/usr/bin/curl")
    await expect(page.locator("#process-argv")).to_contain_text(
        "http://198.51.100.7/kit"
    )
    browser.assert_clean(TEST_TOKEN)


async def test_reverse_shell_streams_show_socket_addresses(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    bash = await running.get(
        "/api/v1/vms/vm-a/processes/0100ed5ec0e1ae68a7fc7a18b6030000"
    )
    await _open(browser, running, f"/vm/vm-a/process/{bash['uuid']}")
    streams = page.locator("#process-streams")
    await expect(streams).to_contain_text("socket")
    await expect(streams).to_contain_text(bash["stdin"]["remote"]["ip"])
    await expect(streams).to_contain_text(str(bash["stdin"]["remote"]["port"]))
    browser.assert_clean(TEST_TOKEN)


async def test_tree_time_control_shows_what_was_alive_then(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    curl = await running.get(f"/api/v1/vms/vm-a/processes/{CURL_UUID}")
    # Just after curl exited, before /tmp/kit started: curl is gone.
    tree = await running.get("/api/v1/vms/vm-a/tree", at=curl["exited_at"])
    alive_then = sorted(p["binary"] for p in tree["items"])

    await _open(browser, running, f"/vm/vm-a/tree?at={curl['exited_at']}")
    await expect(page.locator("#tree-at-label")).to_contain_text("alive at")
    rows = page.locator("#tree-rows .tree-row .bin")
    await expect(rows).to_have_count(len(alive_then))
    assert sorted(await rows.all_inner_texts()) == alive_then
    assert len(alive_then) < len(POD_BINARIES)

    await page.click("#tree-now")
    await expect(rows).to_have_count(len(POD_BINARIES))
    await expect(page.locator("#tree-at-label")).to_contain_text("now")


async def test_container_filter_limits_the_tree_to_the_pod(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await stream_and_store(running, "vm-a", read_vector("web-pod.bin"))
    await _open(browser, running, "/vm/vm-a/tree")
    await expect(page.locator("#tree-rows .tree-row")).to_have_count(8)
    await page.select_option("#tree-container", "2")
    await expect(page.locator("#tree-rows .tree-row")).to_have_count(6)
    assert "container=2" in page.url
    # The same page in the light palette, for operators who prefer it.
    await page.emulate_media(color_scheme="light")
    await browser.shot("tree-container-light")


async def test_login_field_rejects_a_wrong_token_then_signs_in(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await page.goto(running.api_url + "/")
    await expect(page.locator("#login")).to_be_visible()
    await browser.shot("login")

    await page.fill("#token", "not-a-token")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-message")).to_contain_text("rejected")
    assert await page.evaluate("sessionStorage.getItem('csm.token')") is None
    await browser.shot("login-rejected")

    await page.fill("#token", TEST_TOKEN)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#fleet-panel tbody tr")).to_have_count(2)
    await expect(page.locator("#who")).to_contain_text("operator")

    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('csm.token')") is None
    browser.assert_clean(TEST_TOKEN, "not-a-token")


async def test_a_token_revoked_mid_session_returns_to_sign_in(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await _open(browser, running, "/fleet")
    await expect(page.locator("#fleet-panel tbody tr")).to_have_count(2)
    await page.evaluate("sessionStorage.setItem('csm.token', 'revoked')")
    await expect(page.locator("#login-message")).to_contain_text(
        "rejected", timeout=10_000
    )


async def test_unreachable_receiver_is_said_plainly(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    await _open(browser, running, "/fleet")
    await expect(page.locator("#fleet-panel tbody tr")).to_have_count(2)
    await running.service.stop()
    banner = page.locator("#banner")
    await expect(banner).to_contain_text("Receiver unreachable", timeout=10_000)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "down")
    await browser.shot("unreachable")


async def test_missing_endpoints_degrade_to_a_clear_line(
    dashboard_receiver: RunningReceiver, browser: Browser
) -> None:
    running, page = dashboard_receiver, browser.page
    # An older receiver without detections or the stream, played by the
    # browser: the real one has both.
    await page.route(MISSING_ENDPOINTS, _answer_404)
    await _open(browser, running, "/findings")
    await expect(page.locator("#findings-unavailable")).to_contain_text("not available")
    await browser.shot("findings-unavailable")
    await page.goto(f"{running.api_url}/#/vm/vm-a")
    await expect(page.locator("#vm-findings")).to_contain_text("not available")
    await expect(page.locator("#vm-containers")).to_contain_text("No containers")
    await page.goto(f"{running.api_url}/#/live")
    await expect(page.locator("#tail-state")).to_have_text("not available")
    await browser.shot("live-unavailable")
    browser.assert_clean(TEST_TOKEN)


async def test_assets_need_no_token_but_the_api_does(
    dashboard_receiver: RunningReceiver,
) -> None:
    base = dashboard_receiver.api_url
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(base + "/") as response:
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy
            assert 'src="/assets/js/main.js"' in await response.text()
        async with anonymous.get(base + "/assets/js/views/tree.js") as response:
            assert response.status == 200
            assert "javascript" in response.headers["Content-Type"]
            assert response.headers["Content-Security-Policy"] == policy
        async with anonymous.get(base + "/assets/../../pyproject.toml") as response:
            assert response.status in {403, 404}
        async with anonymous.get(base + "/api/v1/vms") as response:
            assert response.status == 401
