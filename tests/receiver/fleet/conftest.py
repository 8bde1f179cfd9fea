"""Fixtures for fleet tests: one fresh PostgreSQL database, and JetStream."""

import os
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from tests.conftest import _create_pg_database, _drop_pg_database

NATS_URL = os.environ.get("CSM_TEST_NATS_URL", "nats://127.0.0.1:4222")
# Under CI a missing NATS server is a failure, not a skip.
REQUIRE_NATS = os.environ.get("CSM_REQUIRE_NATS") == "1"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database."""
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture
async def nats_client() -> AsyncIterator[Client]:
    """A connection to the JetStream server the exporter publishes to."""
    try:
        client = await nats.connect(
            NATS_URL, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False
        )
    except Exception as exc:
        message = f"NATS at {NATS_URL} is unreachable: {exc}"
        if REQUIRE_NATS:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield client
    finally:
        await client.close()
