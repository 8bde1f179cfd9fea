"""Fixtures for driving the dashboard in Debian's headless Chromium."""

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

from tests.conftest import RunningReceiver, make_settings, start_receiver, stop_receiver

CHROMIUM = Path(os.environ.get("CSM_CHROMIUM", "/usr/bin/chromium"))
# A quiet, offline browser: nothing may reach beyond the receiver under test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
VIEWPORT = {"width": 1440, "height": 900}


@dataclass
class Browser:
    """One browser profile with a page, and what its console said."""

    context: BrowserContext
    page: Page
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    async def shot(self, name: str, *, full_page: bool = False) -> Path:
        """Save a screenshot of the page under test-artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"dashboard-{name}.png"
        if not full_page:
            await self.page.screenshot(path=str(path))
            return path
        # The page scrolls inside its main pane, so grow the window to fit it.
        height = await self.page.evaluate(
            "document.querySelector('#view').scrollHeight"
            " + document.querySelector('#view').getBoundingClientRect().top"
        )
        await self.page.set_viewport_size({**VIEWPORT, "height": int(height) + 2})
        await self.page.screenshot(path=str(path))
        await self.page.set_viewport_size(VIEWPORT)
        return path

    def assert_clean(self, *secrets: str) -> None:
        """No uncaught script error, no policy violation, no secret logged."""
        assert self.page_errors == []
        assert not [line for line in self.console if "Content Security Policy" in line]
        for secret in secrets:
            assert not [line for line in self.console if secret in line]


def _chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run scripts/install-system-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Headless Chromium with a fresh profile, dark colour scheme."""
    executable = _chromium()
    profile = tmp_path / "chromium-profile"
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            color_scheme="dark",
        )
        page = context.pages[0] if context.pages else await context.new_page()
        opened = Browser(context, page)

        def on_console(message: ConsoleMessage) -> None:
            opened.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: opened.page_errors.append(str(error)))
        try:
            yield opened
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def dashboard_receiver(
    sqlite_url: str, tmp_path: Path
) -> AsyncIterator[RunningReceiver]:
    """A receiver on SQLite with hybrid VMs ``vm-a`` and ``vm-b``."""
    running = await start_receiver(
        make_settings(tmp_path, sqlite_url, ["vm-a", "vm-b"])
    )
    try:
        yield running
    finally:
        await stop_receiver(running)
