"""A receiver for API tests: a viewer token beside the operator's, and a
short configuration timeout so a silent guest is quick to test."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from receiver.api.auth import add_token_to_file
from tests.conftest import RunningReceiver, make_settings, start_receiver, stop_receiver

CONFIG_TIMEOUT_S = 0.5


@dataclass
class Api:
    """A running receiver and the tokens that reach it."""

    running: RunningReceiver
    viewer_token: str

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.running.api_url

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """Send a request (as the operator unless ``token``); status and body."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.running.http.request(
            method, self.url + path, json=json, params=params, headers=headers
        ) as response:
            if response.status == 204:
                return response.status, None
            return response.status, await response.json(content_type=None)


def api_settings(tmp_path: Path, db_url: str, **extra: Any) -> Any:
    """Settings with vm-a and vm-b and the short configuration timeout."""
    return make_settings(
        tmp_path, db_url, ["vm-a", "vm-b"], config_timeout_s=CONFIG_TIMEOUT_S, **extra
    )


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """A receiver on each database kind with a viewer token ``alice``."""
    viewer = add_token_to_file(
        tmp_path / "var" / "tokens", role="viewer", label="alice"
    )
    api = Api(await start_receiver(api_settings(tmp_path, db_url)), viewer)
    try:
        yield api
    finally:
        # A test may have restarted the receiver: stop the current one.
        await stop_receiver(api.running)
