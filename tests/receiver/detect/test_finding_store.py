"""Stored findings: one per process and kind, and their ids found again by
key (what re-evaluation after a crash journals them with)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.findings import fetch_finding_ids, insert_findings


def finding(uuid: bytes, kind: str) -> dict[str, object]:
    return {
        "vm_id": 1,
        "boot": 7,
        "uuid": uuid,
        "kind": kind,
        "severity": "high",
        "at": 1,
        "container_id": None,
        "exec_session_id": None,
        "details": {},
    }


async def test_stored_findings_keep_their_ids_when_found_again(
    engine: AsyncEngine,
) -> None:
    rows = [finding(b"a" * 16, "reverse_shell"), finding(b"b" * 16, "miner")]
    first = await insert_findings(engine, rows)
    assert len(first) == 2
    # Inserting again stores nothing new; the ids come back by key.
    assert await insert_findings(engine, rows) == {}
    missing = (1, 7, b"c" * 16, "reverse_shell")
    found = await fetch_finding_ids(engine, [*first, missing])
    assert found == first
    assert await fetch_finding_ids(engine, []) == {}
