"""Desired configurations and the history of changes to them.

A scope is a VM name, or ``*`` for the fleet default. Each change bumps the
scope's generation and adds a history row that later records what the
guest answered.
"""

import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.models import config_changes, desired_configs

FLEET_SCOPE = "*"


class ChangeStatus(enum.StrEnum):
    """Where a configuration change stands."""

    # Sent, or waiting for the VM to connect; no answer yet.
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    # A newer change was answered before this one was.
    SUPERSEDED = "superseded"
    # A fleet default: kept, and sent to the VMs that use it.
    STORED = "stored"


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    """The stored configuration of one scope."""

    scope: str
    generation: int
    config: dict[str, Any]
    updated_at: int
    updated_by: str


def _desired(row: Row[Any]) -> DesiredConfig:
    return DesiredConfig(
        row.scope,
        row.generation,
        json.loads(row.config),
        row.updated_at,
        row.updated_by,
    )


async def fetch_desired(engine: AsyncEngine, scope: str) -> DesiredConfig | None:
    """The stored configuration of ``scope``, if any."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(desired_configs).where(desired_configs.c.scope == scope)
            )
        ).first()
    return _desired(row) if row is not None else None


async def fetch_all_desired(engine: AsyncEngine) -> list[DesiredConfig]:
    """Every stored configuration."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(desired_configs))).all()
    return [_desired(row) for row in rows]


async def store_desired(
    engine: AsyncEngine, scope: str, config: dict[str, Any], changed_by: str
) -> tuple[DesiredConfig, int]:
    """Store a new configuration for ``scope``; return it and its change id."""
    now = time.time_ns()
    text = json.dumps(config, sort_keys=True)
    status = ChangeStatus.STORED if scope == FLEET_SCOPE else ChangeStatus.PENDING
    c = desired_configs.c
    async with engine.begin() as connection:
        current = (
            await connection.execute(
                select(c.generation).where(c.scope == scope).with_for_update()
            )
        ).first()
        generation = 1 if current is None else int(current.generation) + 1
        values = {
            "config": text,
            "generation": generation,
            "updated_at": now,
            "updated_by": changed_by,
        }
        if current is None:
            await connection.execute(
                desired_configs.insert().values(scope=scope, **values)
            )
        else:
            await connection.execute(
                update(desired_configs).where(c.scope == scope).values(**values)
            )
        result = await connection.execute(
            config_changes.insert().values(
                scope=scope,
                generation=generation,
                config=text,
                changed_at=now,
                changed_by=changed_by,
                status=status,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
    return DesiredConfig(scope, generation, config, now, changed_by), int(key[0])


async def record_answer(
    engine: AsyncEngine,
    scope: str,
    generation: int,
    status: ChangeStatus,
    response: dict[str, Any],
) -> None:
    """Record a guest's answer to generation ``generation`` of ``scope``.

    Older changes still pending were never answered: the guest now runs a
    newer one, so they are marked superseded.
    """
    c = config_changes.c
    now = time.time_ns()
    async with engine.begin() as connection:
        await connection.execute(
            update(config_changes)
            .where(
                c.scope == scope,
                c.generation == generation,
                c.status == ChangeStatus.PENDING,
            )
            .values(status=status, response=json.dumps(response), answered_at=now)
        )
        await connection.execute(
            update(config_changes)
            .where(
                c.scope == scope,
                c.generation < generation,
                c.status == ChangeStatus.PENDING,
            )
            .values(status=ChangeStatus.SUPERSEDED, answered_at=now)
        )


async def record_fleet_answers(
    engine: AsyncEngine, change_id: int, answers: dict[str, Any]
) -> None:
    """Keep what each VM answered to a fleet default change."""
    async with engine.begin() as connection:
        await connection.execute(
            update(config_changes)
            .where(config_changes.c.id == change_id)
            .values(response=json.dumps(answers), answered_at=time.time_ns())
        )


async def fetch_changes(
    engine: AsyncEngine, scope: str, before_id: int | None, limit: int
) -> Sequence[Row[Any]]:
    """A page of a scope's changes, newest first."""
    c = config_changes.c
    query = select(config_changes).where(c.scope == scope)
    if before_id is not None:
        query = query.where(c.id < before_id)
    query = query.order_by(c.id.desc()).limit(limit)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


def change_as_json(row: Row[Any]) -> dict[str, Any]:
    """One history row as JSON-ready data (times stay nanoseconds)."""
    return {
        "id": row.id,
        "scope": row.scope,
        "generation": row.generation,
        "config": json.loads(row.config),
        "changed_at": row.changed_at,
        "changed_by": row.changed_by,
        "status": row.status,
        "response": json.loads(row.response) if row.response else None,
        "answered_at": row.answered_at,
    }
