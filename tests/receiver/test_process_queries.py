"""The process queries: one process by UUID, its ancestors in one query, and
the tree, all showing a process the same way."""

from sqlalchemy import inspect

from tests.conftest import RunningReceiver, read_vector
from tests.receiver.helpers import all_items, stream_and_store

DETAIL_ONLY = ("ancestors", "children", "execs", "memexecs")


async def test_a_process_is_found_through_the_uuid_index(
    receiver: RunningReceiver,
) -> None:
    async with receiver.service.engine.connect() as connection:
        indexes = await connection.run_sync(
            lambda sync: inspect(sync).get_indexes("processes")
        )
    by_name = {index["name"]: index["column_names"] for index in indexes}
    assert by_name["ix_processes_uuid"] == ["vm_id", "uuid"]


async def test_every_endpoint_shows_a_process_alike(
    receiver: RunningReceiver,
) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    listed = await all_items(receiver, "/api/v1/vms/vm-a/processes")
    tree = await receiver.get("/api/v1/vms/vm-a/tree")
    assert sorted(tree["items"], key=lambda p: p["uuid"]) == sorted(
        listed, key=lambda p: p["uuid"]
    )

    by_uuid = {p["uuid"]: p for p in listed}
    deepest = 0
    for uuid, expected in by_uuid.items():
        detail = await receiver.get(f"/api/v1/vms/vm-a/processes/{uuid}")
        assert {k: v for k, v in detail.items() if k not in DETAIL_ONLY} == expected
        children = [p for p in listed if p["parent_uuid"] == uuid]
        assert sorted(detail["children"], key=lambda p: p["uuid"]) == sorted(
            children, key=lambda p: p["uuid"]
        )
        # The ancestors are the parent links followed one by one.
        chain = []
        parent = by_uuid[uuid]["parent_uuid"]
        while parent in by_uuid:
            chain.append(by_uuid[parent])
            parent = by_uuid[parent]["parent_uuid"]
        assert detail["ancestors"] == chain
        deepest = max(deepest, len(chain))
    assert deepest >= 2


async def test_the_tree_roots_are_processes_without_a_parent_in_it(
    receiver: RunningReceiver,
) -> None:
    await stream_and_store(receiver, "vm-a", read_vector("web-pod.bin"))
    tree = await receiver.get("/api/v1/vms/vm-a/tree")
    present = {p["uuid"] for p in tree["items"]}
    expected = [p["uuid"] for p in tree["items"] if p["parent_uuid"] not in present]
    assert tree["roots"] == expected
    assert 0 < len(tree["roots"]) < len(tree["items"])
