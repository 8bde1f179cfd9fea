"""The live stream: stored events and findings as server-sent events.

Ingest publishes a compact summary of each stored event to the live hub;
each stream client reads its own bounded subscription. A client that reads
too slowly loses the oldest messages and gets a ``missed`` event saying how
many, so neither it nor the server ever holds more than one buffer.
"""

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from receiver.api.context import service_of
from receiver.api.problems import ApiProblem, bad_parameter, not_found
from receiver.api.serialize import boot_hex, text, uuid_hex
from receiver.live import LiveHub, LiveMessage, Subscription
from receiver.settings import VM_NAME_PATTERN
from receiver.store.codec import u64_from_db
from receiver.timefmt import format_ns

if TYPE_CHECKING:
    from receiver.ingest.pipeline import BatchListener, QueuedEvent

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

STREAM_KINDS = ("event", "finding")
MAX_STREAM_CLIENTS = 64
STREAM_BUFFER_MESSAGES = 1000
KEEPALIVE_S = 15.0
# Offered to every open stream when the API shuts down.
CLOSE_KIND = "_close"

STREAMS_KEY: web.AppKey[set[Subscription]] = web.AppKey("streams")


def event_summary(item: "QueuedEvent") -> dict[str, Any]:
    """A stored event as the stream shows it."""
    record = item.record
    summary: dict[str, Any] = {
        "type": record.kind,
        "boot": boot_hex(record.boot),
        "at": format_ns(u64_from_db(record.at)),
        "received_at": format_ns(item.received_at),
        "process_uuid": uuid_hex(record.uuid),
    }
    process = record.process
    if process is not None:
        summary["pid"] = process.pid
        summary["parent_uuid"] = uuid_hex(process.parent_uuid)
        if process.binary is not None:
            summary["binary"] = text(process.binary)
        if process.container_id:
            summary["container_id"] = u64_from_db(process.container_id)
        if process.exec_session_id:
            summary["exec_session_id"] = u64_from_db(process.exec_session_id)
    return summary


def publish_stored_events(hub: LiveHub) -> "BatchListener":
    """An ingest listener that publishes each stored event to ``hub``."""

    async def publish(items: Sequence["QueuedEvent"]) -> None:
        if not hub.subscribers:
            return
        for item in items:
            hub.publish("event", item.vm.name, event_summary(item))

    return publish


def _kinds(raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset(STREAM_KINDS)
    kinds = frozenset(part.strip() for part in raw.split(","))
    if not kinds or not kinds <= set(STREAM_KINDS):
        raise bad_parameter("kind", f"a comma-separated list of {STREAM_KINDS}")
    return kinds


def _vm_filter(request: web.Request) -> str | None:
    name = request.query.get("vm")
    if name is None:
        return None
    if not VM_NAME_PATTERN.fullmatch(name):
        raise bad_parameter("vm", "a VM name")
    if service_of(request).registry.get(name) is None:
        raise not_found(f"no VM named {name!r}")
    return name


def format_sse(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"))
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


@routes.get("/api/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """Live events and findings, filtered by ``vm`` and ``kind``."""
    vm = _vm_filter(request)
    kinds = _kinds(request.query.get("kind"))
    hub = service_of(request).hub
    streams = request.app[STREAMS_KEY]
    if len(streams) >= MAX_STREAM_CLIENTS:
        raise ApiProblem(503, "Too many streams", f"at most {MAX_STREAM_CLIENTS}")

    def accepts(message: LiveMessage) -> bool:
        return message.kind in kinds and (vm is None or message.vm == vm)

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    subscription = hub.subscribe(accepts, STREAM_BUFFER_MESSAGES)
    streams.add(subscription)
    try:
        await response.write(b": connected\n\n")
        await _pump(subscription, response)
    except ConnectionResetError:
        log.debug("stream client went away")
    finally:
        streams.discard(subscription)
        hub.unsubscribe(subscription)
    return response


async def _pump(subscription: Subscription, response: web.StreamResponse) -> None:
    while True:
        messages, missed = await subscription.next_batch(KEEPALIVE_S)
        chunks: list[bytes] = []
        if missed:
            chunks.append(format_sse("missed", {"missed": missed}))
        for message in messages:
            if message.kind == CLOSE_KIND:
                await response.write(b"".join(chunks))
                return
            data = {"vm": message.vm, **message.data}
            chunks.append(format_sse(message.kind, data, message.id))
        # Writing waits while the client's socket is full; meanwhile the
        # subscription drops its oldest messages instead of growing.
        await response.write(b"".join(chunks) or b": keepalive\n\n")


async def close_streams(app: web.Application) -> None:
    """End every open stream so shutdown does not wait for clients."""
    streams: set[Subscription] = app[STREAMS_KEY]
    for subscription in list(streams):
        subscription.offer(LiveMessage(0, CLOSE_KIND, "", {}))
