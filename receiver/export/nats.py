"""The NATS JetStream sink: publish with a ``Nats-Msg-Id`` and wait for the
stream's acknowledgement, so a message is either stored once or retried.

A republished message (after a crash between publish and saving the cursor)
carries the same id, and JetStream drops it within the stream's duplicate
window.
"""

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import NotFoundError

from receiver.export.errors import SinkUnavailable
from receiver.export.source import ExportItem, encode_body

log = logging.getLogger(__name__)

# Long enough to cover a receiver restart, so replays are dropped.
DUPLICATE_WINDOW_S = 600.0
PUBLISH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# The server's max_payload covers headers too; NATS's default is 1 MiB.
DEFAULT_MAX_PAYLOAD = 1 << 20
HEADER_ALLOWANCE_BYTES = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def subject_token(name: str) -> str:
    """``name`` made a single subject token (dots and wildcards replaced)."""
    return _UNSAFE.sub("_", name) or "_"


class NatsSink:
    """Publishes export items to one JetStream stream."""

    def __init__(self, url: str, stream: str, prefix: str) -> None:
        self.name = f"nats:{stream}"
        self.url = url
        self.stream = stream
        self.prefix = prefix
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        # Bodies cut to fit the server's largest message.
        self.oversized = 0

    def _max_body(self) -> int:
        client = self._client
        limit = client.max_payload if client is not None else DEFAULT_MAX_PAYLOAD
        return max(1024, limit - HEADER_ALLOWANCE_BYTES)

    def subject(self, item: ExportItem) -> str:
        """``<prefix>.<events|findings>.<host>.<vm>.<kind>``."""
        parts = (item.host, item.vm, item.kind)
        tokens = ".".join(subject_token(part) for part in parts)
        return f"{self.prefix}.{item.stream}.{tokens}"

    async def connect(self) -> None:
        """Connect and make sure the stream exists (created if missing)."""
        try:
            self._client = await self._connect_once()
            self._js = self._client.jetstream(timeout=PUBLISH_TIMEOUT_S)
            try:
                await self._js.stream_info(self.stream)
            except NotFoundError:
                await self._js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[f"{self.prefix}.>"],
                        duplicate_window=DUPLICATE_WINDOW_S,
                    )
                )
                log.info("created JetStream stream %s", self.stream)
        except Exception as exc:
            # Whatever the client raised while connecting (refused, timed
            # out, a protocol or auth error): the exporter retries later.
            raise SinkUnavailable(f"NATS at {self.url}: {exc}") from exc

    async def _connect_once(self) -> Client:
        """One bounded attempt. Once connected, the client reconnects by
        itself without end; its first connect would too, so the first error
        it reports ends the attempt here and the exporter retries with
        backoff."""
        failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def on_error(exc: Exception) -> None:
            # The exporter logs each failed attempt; the client's own report
            # of every connection error would repeat it.
            log.debug("NATS client error: %s", exc)
            if not failed.done():
                failed.set_result(exc)

        connecting = asyncio.ensure_future(
            nats.connect(
                self.url,
                connect_timeout=CONNECT_TIMEOUT_S,
                max_reconnect_attempts=-1,
                error_cb=on_error,
            )
        )
        either: set[asyncio.Future[Any]] = {connecting, failed}
        done, _ = await asyncio.wait(
            either,
            timeout=CONNECT_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if connecting in done:
            return connecting.result()
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        if failed.done():
            raise failed.result()
        raise TimeoutError(f"no answer in {CONNECT_TIMEOUT_S:g} s")

    async def publish(self, items: Sequence[ExportItem]) -> None:
        """Publish ``items`` in order and wait until JetStream stored each."""
        js = self._js
        if js is None:
            raise SinkUnavailable("NATS is not connected")
        acks: list[asyncio.Future[PubAck]] = []
        try:
            for item in items:
                headers = {
                    "Nats-Msg-Id": item.msg_id,
                    "Csm-Host": item.host,
                    "Csm-Vm": item.vm,
                    "Csm-Kind": item.kind,
                }
                body, cut = encode_body(item, self._max_body())
                if cut:
                    self.oversized += 1
                    log.warning("%s: %s cut to fit NATS", self.name, item.msg_id)
                acks.append(
                    await js.publish_async(
                        self.subject(item), body, stream=self.stream, headers=headers
                    )
                )
            await asyncio.wait_for(asyncio.gather(*acks), PUBLISH_TIMEOUT_S)
        except (OSError, NatsError, TimeoutError) as exc:
            for ack in acks:
                ack.cancel()
            raise SinkUnavailable(f"NATS publish failed: {exc}") from exc

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._client is not None and not self._client.is_closed:
            await self._client.drain()
        self._client = None
        self._js = None
