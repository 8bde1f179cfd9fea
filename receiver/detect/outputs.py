"""Where findings go besides the store: one log line each, and a webhook.

The webhook posts each finding as one JSON document, in order. A failed
attempt (no connection, a timeout, 408, 429 or 5xx) is retried with
exponential backoff while newer findings wait in a bounded queue; when the
queue is full the oldest waiting finding is dropped and counted. Any other
answer outside 2xx is a refusal: the finding is dropped and counted.
"""

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

import aiohttp

log = logging.getLogger(__name__)
findings_log = logging.getLogger("receiver.findings")

RETRY_INITIAL_S = 0.5
DEFAULT_RETRY_MAX_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_QUEUE_FINDINGS = 10_000
RETRIED_STATUSES = frozenset({408, 425, 429})


def log_finding(finding: dict[str, Any]) -> None:
    """Write one structured line for ``finding`` to ``receiver.findings``."""
    # INFO whatever the severity: WARNING is for the receiver's own troubles,
    # and the severity is a field of the line for log pipelines to route on.
    line = json.dumps(finding, sort_keys=True, separators=(",", ":"))
    findings_log.info("finding %s", line)


class WebhookSink:
    """Delivers findings to one URL in order, retrying failed attempts."""

    def __init__(
        self,
        url: str,
        *,
        capacity: int = DEFAULT_QUEUE_FINDINGS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
    ) -> None:
        self.url = url
        self.capacity = capacity
        self.timeout_s = timeout_s
        self.retry_initial_s = min(retry_initial_s, retry_max_s)
        self.retry_max_s = retry_max_s
        self.delivered = 0
        self.failures = 0
        self.dropped = 0
        self.refused = 0
        self._consecutive_failures = 0
        self._queue: deque[bytes] = deque()
        self._current: bytes | None = None
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Findings waiting, including the one being attempted."""
        return len(self._queue) + (self._current is not None)

    def offer(self, finding: dict[str, Any]) -> None:
        """Queue ``finding``; drop (and count) the oldest waiting one if full."""
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "webhook queue full (%d findings): %d dropped so far",
                    self.capacity,
                    self.dropped,
                )
        self._queue.append(json.dumps(finding, separators=(",", ":")).encode())
        self._wake.set()

    def start(self) -> None:
        """Start delivering in the background."""
        self._task = asyncio.create_task(self._run(), name="webhook")

    async def close(self, grace_s: float) -> None:
        """Deliver what is queued within ``grace_s``, then stop."""
        if self._task is None:
            return
        self._closing.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.pending:
            log.warning("webhook: %d findings not delivered at shutdown", self.pending)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        headers = {"Content-Type": "application/json", "User-Agent": "csm-receiver"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            delay = self.retry_initial_s
            while True:
                if self._current is None:
                    if not self._queue:
                        if self._closing.is_set():
                            return
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    self._current = self._queue.popleft()
                if await self._attempt(http, self._current):
                    self._current = None
                    delay = self.retry_initial_s
                    continue
                if self._closing.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _attempt(self, http: aiohttp.ClientSession, body: bytes) -> bool:
        """Post ``body`` once; True when it needs no further attempt."""
        try:
            async with http.post(self.url, data=body) as response:
                status = response.status
                await response.read()
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._note_failure(f"{type(exc).__name__}: {exc}")
            return False
        if 200 <= status < 300:
            self.delivered += 1
            if self._consecutive_failures:
                log.info(
                    "webhook %s reachable again after %d failed attempts",
                    self.url,
                    self._consecutive_failures,
                )
                self._consecutive_failures = 0
            return True
        if status >= 500 or status in RETRIED_STATUSES:
            self._note_failure(f"HTTP {status}")
            return False
        self.refused += 1
        log.error(
            "webhook %s refused a finding with HTTP %d; dropped", self.url, status
        )
        return True

    def _note_failure(self, reason: str) -> None:
        self.failures += 1
        self._consecutive_failures += 1
        # One warning when an outage starts, then one per 100 attempts.
        count = self._consecutive_failures
        if count == 1 or count % 100 == 0:
            log.warning(
                "webhook %s: delivery failed (%s); %d attempts in a row, "
                "%d findings waiting",
                self.url,
                reason,
                count,
                self.pending,
            )
