"""GET /api/v1/fleet/summary: every VM of two hosts with what the fleet page
shows, filtered by host, paged, refused with a clear 400 when asked wrongly,
and answered in the same number of SQL statements for 5 VMs as for 200."""

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from bench.fleet_summary import (
    BOOTS_PER_VM,
    FINDINGS_PER_VM,
    GAPS_PER_VM,
    seed_receiver,
    seed_remote_vms,
)
from receiver.api.params import encode_cursor
from receiver.store.models import vm_leases
from tests.conftest import read_vector, start_receiver, stop_receiver
from tests.receiver.api.conftest import Api, api_settings
from tests.receiver.helpers import stream_and_store

SUMMARY = "/api/v1/fleet/summary"
LOCAL = "test-host"
OTHER = "hv-other"
SEVERITIES = {"info", "low", "medium", "high", "critical"}
# The page (3 statements) and the totals (4): fixed, whatever the fleet.
MAX_STATEMENTS = 7
# Every seeded gap says it lost this many events.
SEEDED_GAP_EVENTS = 10


async def _wait_findings(api: Api, vm: str, count: int) -> None:
    for _ in range(200):
        status, body = await api.call("GET", "/api/v1/findings", params={"vm": vm})
        if status == 200 and len(body["items"]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{vm} has fewer than {count} findings")


async def _seed_other_host(api: Api) -> None:
    """db-1 connected through another receiver, vm-a there too but its
    lease expired (that receiver stopped renewing)."""
    engine = api.running.service.engine
    await seed_receiver(engine, OTHER)
    await seed_remote_vms(engine, OTHER, ["db-1"])
    (stale,) = await seed_remote_vms(engine, OTHER, ["vm-a"])
    async with engine.begin() as connection:
        await connection.execute(
            update(vm_leases)
            .where(vm_leases.c.vm_id == stale)
            .values(expires_at=time.time_ns() - 1)
        )


def _by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(item["host"], item["name"]): item for item in items}


async def test_summary_shows_every_vm_of_both_hosts_with_its_figures(
    api: Api,
) -> None:
    await stream_and_store(api.running, "vm-a", read_vector("web-pod.bin"))
    await _wait_findings(api, "vm-a", 4)
    await _seed_other_host(api)

    status, body = await api.call("GET", SUMMARY, token=api.viewer_token)
    assert status == 200, body
    keys = [(item["name"], item["host"]) for item in body["items"]]
    assert keys == [("db-1", OTHER), ("vm-a", OTHER), ("vm-a", LOCAL), ("vm-b", LOCAL)]
    assert body["next"] is None
    items = _by_key(body["items"])

    # A local VM: as GET /api/v1/vms/{vm} shows it, from the live state.
    local = items[(LOCAL, "vm-a")]
    status, detail = await api.call("GET", "/api/v1/vms/vm-a")
    assert status == 200
    for field in ("transport", "address", "connected", "health", "protocol"):
        assert local[field] == detail[field], field
    assert local["id"] > 0 and local["protocol"] == "v1"
    assert local["boots"] == len(detail["boots"]) == 1
    assert local["last_event_at"] == detail["boots"][0]["last_seen"]
    assert local["counters"]["events"] == detail["counters"]["events"] > 0
    assert local["counters"]["decode_errors"] == 0
    assert local["counters"]["drops"] == sum(detail["counters"]["drops"].values())
    assert local["gaps"] == []
    findings = local["findings"]
    assert set(findings["by_severity"]) == SEVERITIES
    assert findings["total"] == sum(findings["by_severity"].values()) >= 4
    idle = items[(LOCAL, "vm-b")]
    assert idle["boots"] == 0 and idle["last_event_at"] is None
    assert idle["counters"]["events"] == 0 and idle["findings"]["total"] == 0

    # Another host's VMs: as the lease of its receiver says; no counters.
    remote = items[(OTHER, "db-1")]
    assert remote["connected"] is True and remote["health"] == "healthy"
    assert remote["protocol"] == "v2" and remote["last_heartbeat"] is not None
    assert remote["counters"] is None and remote["hello"] is None
    assert remote["boots"] == BOOTS_PER_VM
    assert remote["gaps"] == [
        {
            "cause": "guest_overflow",
            "gaps": GAPS_PER_VM,
            "events": GAPS_PER_VM * SEEDED_GAP_EVENTS,
            "unknown_size": 0,
        }
    ]
    assert remote["findings"]["total"] == FINDINGS_PER_VM
    stale = items[(OTHER, "vm-a")]
    assert stale["connected"] is False and stale["health"] == "disconnected"
    assert stale["protocol"] is None

    totals = body["totals"]
    assert totals["vms"] == 4
    assert totals["connected"] == 1
    assert totals["events"] == local["counters"]["events"]
    assert totals["gaps"] == 2 * GAPS_PER_VM
    assert totals["gap_events"] == 2 * GAPS_PER_VM * SEEDED_GAP_EVENTS
    assert totals["findings"]["total"] == findings["total"] + 2 * FINDINGS_PER_VM
    assert totals["hosts"] == 2 and totals["hosts_running"] == 2
    assert sorted(h["host"] for h in body["hosts"]) == sorted([LOCAL, OTHER])


async def test_host_filter_and_pages(api: Api) -> None:
    await stream_and_store(api.running, "vm-a", read_vector("web-pod.bin"))
    await _seed_other_host(api)

    status, other = await api.call("GET", SUMMARY, params={"host": OTHER})
    assert status == 200, other
    assert [(i["host"], i["name"]) for i in other["items"]] == [
        (OTHER, "db-1"),
        (OTHER, "vm-a"),
    ]
    assert other["totals"]["vms"] == 2 and other["totals"]["connected"] == 1
    # This receiver's live counters belong to its own host only.
    assert other["totals"]["events"] == 0
    assert other["totals"]["findings"]["total"] == 2 * FINDINGS_PER_VM
    assert [h["host"] for h in other["hosts"]] == [OTHER]

    status, local = await api.call("GET", SUMMARY, params={"host": LOCAL})
    assert [i["name"] for i in local["items"]] == ["vm-a", "vm-b"]
    assert local["totals"]["vms"] == 2 and local["totals"]["gaps"] == 0
    assert local["totals"]["events"] > 0
    status, nobody = await api.call("GET", SUMMARY, params={"host": "hv-none"})
    assert status == 200 and nobody["items"] == [] and nobody["totals"]["vms"] == 0

    status, everything = await api.call("GET", SUMMARY)
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        status, page = await api.call("GET", SUMMARY, params=params)
        assert status == 200, page
        assert len(page["items"]) <= 3
        # Totals cover every VM in scope on every page.
        assert page["totals"]["vms"] == 4
        seen.extend(page["items"])
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert [i["id"] for i in seen] == [i["id"] for i in everything["items"]]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"host": "not a host!"}, "host"),
        ({"host": ""}, "host"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": encode_cursor("gaps", [1])}, "cursor"),
        ({"cursor": encode_cursor("fleet-summary", ["vm-a", 7])}, "cursor"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    api: Api, params: dict[str, str], parameter: str
) -> None:
    url = api.url + SUMMARY
    async with api.running.http.get(url, params=params) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["parameter"] == parameter
    assert problem["detail"].startswith(f"{parameter}: ")


async def test_a_token_is_needed(api: Api) -> None:
    async with api.running.http.get(
        api.url + SUMMARY, headers={"Authorization": "Bearer wrong"}
    ) as response:
        assert response.status == 401


class StatementLog:
    """SQL statements sent through an engine, by the asyncio task that sent
    them: the request's own, apart from the receiver's background work."""

    def __init__(self) -> None:
        self.by_task: dict[object, list[str]] = defaultdict(list)

    def record(self, *args: Any) -> None:
        statement = args[2]
        self.by_task[asyncio.current_task()].append(statement)

    def of_request(self, marker: str) -> list[str]:
        """The statements of the one task that sent ``marker``."""
        tasks = [
            task
            for task, statements in self.by_task.items()
            if any(marker in s for s in statements)
        ]
        assert len(tasks) == 1, tasks
        return self.by_task[tasks[0]]


# Only the summary joins vms with their leases this way.
SUMMARY_MARKER = "FROM vms LEFT OUTER JOIN vm_leases"


async def _statements_of_one_summary(api: Api) -> tuple[int, int]:
    engine = api.running.service.engine.sync_engine
    log = StatementLog()
    event.listen(engine, "before_cursor_execute", log.record)
    try:
        status, body = await api.call("GET", SUMMARY, params={"limit": 1000})
    finally:
        event.remove(engine, "before_cursor_execute", log.record)
    assert status == 200, body
    return len(log.of_request(SUMMARY_MARKER)), len(body["items"])


async def test_statements_do_not_grow_with_the_fleet(
    db_url: str, tmp_path: Path
) -> None:
    settings = api_settings(tmp_path, db_url, fleet_heartbeat_s=3600.0)
    api = Api(await start_receiver(settings), viewer_token="")
    try:
        engine = api.running.service.engine
        await seed_receiver(engine, OTHER)
        await seed_remote_vms(engine, OTHER, [f"few-{n}" for n in range(3)])
        few, items = await _statements_of_one_summary(api)
        assert items == 5  # vm-a, vm-b and three of the other host

        await seed_remote_vms(engine, OTHER, [f"many-{n:03d}" for n in range(195)])
        many, items = await _statements_of_one_summary(api)
        assert items == 200
    finally:
        await stop_receiver(api.running)
    assert few == many <= MAX_STATEMENTS
