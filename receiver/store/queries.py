"""Read queries behind the API; every list is keyset-paginated."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    Row,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.store.codec import u64_to_db
from receiver.store.models import boots, containers, execs, memexecs, processes, vms

# A hostile guest can send parent links of any depth, or cycles.
MAX_ANCESTORS = 256

# The columns the API shows of a process, in the order
# ``receiver.api.serialize.process`` unpacks them; every process query
# selects exactly these.
PROCESS_COLUMNS = (
    "uuid",
    "boot",
    "pid",
    "parent_uuid",
    "parent_pid",
    "binary",
    "argv",
    "envp",
    "container_id",
    "container_pid",
    "exec_session_id",
    "started_at",
    "exec_at",
    "exited_at",
    "streams",
    "binary_layer",
    "binary_written_by",
    "exit_status",
)


def process_columns(table: Any = processes) -> list[Any]:
    return [table.c[name] for name in PROCESS_COLUMNS]


@dataclass(frozen=True, slots=True)
class ProcessFilter:
    """The filters of the process list."""

    boot: int | None = None
    container_id: int | None = None
    exec_session_id: int | None = None
    alive: bool | None = None
    binary: bytes | None = None
    since: int | None = None
    until: int | None = None


async def fetch_vms(engine: AsyncEngine, host: str | None = None) -> Sequence[Row[Any]]:
    """Every VM row that was not deleted (of one host, or all), by name."""
    query = select(vms).where(vms.c.deleted_at.is_(None))
    if host is not None:
        query = query.where(vms.c.host == host)
    async with engine.connect() as connection:
        result = await connection.execute(query.order_by(vms.c.name, vms.c.host))
        return result.all()


async def fetch_boots(
    engine: AsyncEngine, vm_id: int | None = None
) -> Sequence[Row[Any]]:
    """Boots, of one VM or of all, oldest first."""
    query = select(boots).order_by(boots.c.vm_id, boots.c.first_seen)
    if vm_id is not None:
        query = query.where(boots.c.vm_id == vm_id)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


async def fetch_containers(
    engine: AsyncEngine, vm_id: int, after: tuple[int, int] | None, limit: int
) -> Sequence[Row[Any]]:
    """A page of a VM's containers, ordered by (boot, container_id)."""
    query = select(containers).where(containers.c.vm_id == vm_id)
    if after is not None:
        query = query.where(
            tuple_(containers.c.boot, containers.c.container_id) > after
        )
    query = query.order_by(containers.c.boot, containers.c.container_id).limit(limit)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


def _binary_contains(needle: bytes, dialect: str) -> Any:
    if dialect == "postgresql":
        clause = text("position(:needle in processes.binary) > 0")
    else:
        clause = text("instr(processes.binary, :needle) > 0")
    return clause.bindparams(bindparam("needle", needle))


def _filtered(query: Select[Any], filters: ProcessFilter, dialect: str) -> Select[Any]:
    c = processes.c
    if filters.boot is not None:
        query = query.where(c.boot == filters.boot)
    if filters.container_id is not None:
        query = query.where(c.container_id == u64_to_db(filters.container_id))
    if filters.exec_session_id is not None:
        query = query.where(c.exec_session_id == u64_to_db(filters.exec_session_id))
    if filters.alive is True:
        query = query.where(c.exited_at.is_(None))
    elif filters.alive is False:
        query = query.where(c.exited_at.is_not(None))
    if filters.binary is not None:
        query = query.where(_binary_contains(filters.binary, dialect))
    if filters.since is not None:
        query = query.where(c.started_at >= filters.since)
    if filters.until is not None:
        query = query.where(c.started_at < filters.until)
    return query


def filter_processes(
    query: Select[Any], filters: ProcessFilter, dialect: str
) -> Select[Any]:
    """Apply the process list's filters to a query over ``processes``."""
    return _filtered(query, filters, dialect)


async def fetch_processes(
    engine: AsyncEngine,
    vm_id: int,
    filters: ProcessFilter,
    after: tuple[int, int, bytes] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A page of processes ordered by (started_at, boot, uuid)."""
    c = processes.c
    query: Select[Any] = select(*process_columns()).where(c.vm_id == vm_id)
    query = _filtered(query, filters, engine.dialect.name)
    if after is not None:
        query = query.where(tuple_(c.started_at, c.boot, c.uuid) > after)
    query = query.order_by(c.started_at, c.boot, c.uuid).limit(limit)
    async with engine.connect() as connection:
        rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
    return rows


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One process with its ancestors (nearest first), children and history."""

    process: Row[Any]
    ancestors: list[Row[Any]]
    children: Sequence[Row[Any]]
    execs: Sequence[Row[Any]]
    memexecs: Sequence[Row[Any]]


async def find_process(engine: AsyncEngine, vm_id: int, uuid: bytes) -> Row[Any] | None:
    """The process with ``uuid`` in any boot of the VM (its UUID names the boot)."""
    async with engine.connect() as connection:
        return await _find_process(connection, vm_id, uuid)


async def fetch_process_view(
    engine: AsyncEngine,
    vm_id: int,
    uuid: bytes,
    *,
    children_limit: int,
    memexecs_limit: int,
) -> ProcessView | None:
    """A process and everything its page shows, on one connection."""
    async with engine.connect() as connection:
        process = await _find_process(connection, vm_id, uuid)
        if process is None:
            return None
        boot = process.boot
        return ProcessView(
            process,
            await _ancestors(connection, vm_id, boot, process.parent_uuid),
            await _children(connection, vm_id, boot, uuid, children_limit),
            await _execs(connection, vm_id, boot, uuid),
            await _memexecs(connection, vm_id, boot, uuid, memexecs_limit),
        )


async def fetch_ancestors(
    engine: AsyncEngine, vm_id: int, boot: int, parent_uuid: bytes | None
) -> list[Row[Any]]:
    """The chain of parents, nearest first, stopping at a cycle or the cap."""
    async with engine.connect() as connection:
        return await _ancestors(connection, vm_id, boot, parent_uuid)


async def _find_process(
    connection: AsyncConnection, vm_id: int, uuid: bytes
) -> Row[Any] | None:
    c = processes.c
    query = select(*process_columns()).where(c.vm_id == vm_id, c.uuid == uuid).limit(1)
    return (await connection.execute(query)).first()


def _ancestors_query() -> Select[Any]:
    vm_id = bindparam("vm_id", type_=Integer)
    boot = bindparam("boot", type_=BigInteger)
    c = processes.c
    chain = (
        select(*process_columns(), literal(1, Integer).label("depth"))
        .where(
            c.vm_id == vm_id,
            c.boot == boot,
            c.uuid == bindparam("parent_uuid", type_=LargeBinary),
        )
        .cte("chain", recursive=True)
    )
    parent = processes.alias("parent")
    chain = chain.union_all(
        select(*process_columns(parent), (chain.c.depth + 1).label("depth")).where(
            parent.c.vm_id == vm_id,
            parent.c.boot == boot,
            parent.c.uuid == chain.c.parent_uuid,
            chain.c.depth < MAX_ANCESTORS,
        )
    )
    return select(*process_columns(chain)).order_by(chain.c.depth)


# Built once: making a recursive CTE costs more than running it.
ANCESTORS_QUERY = _ancestors_query()


async def _ancestors(
    connection: AsyncConnection, vm_id: int, boot: int, parent_uuid: bytes | None
) -> list[Row[Any]]:
    if parent_uuid is None:
        return []
    # The depth cap ends the recursion; a cycle comes back as repeated rows,
    # cut at the first process already in the chain.
    rows = await connection.execute(
        ANCESTORS_QUERY, {"vm_id": vm_id, "boot": boot, "parent_uuid": parent_uuid}
    )
    chain: list[Row[Any]] = []
    seen: set[bytes] = set()
    for row in rows:
        if row.uuid in seen:
            break
        seen.add(row.uuid)
        chain.append(row)
    return chain


async def _children(
    connection: AsyncConnection, vm_id: int, boot: int, uuid: bytes, limit: int
) -> Sequence[Row[Any]]:
    c = processes.c
    query = (
        select(*process_columns())
        .where(c.vm_id == vm_id, c.boot == boot, c.parent_uuid == uuid)
        .order_by(c.started_at, c.uuid)
        .limit(limit)
    )
    return (await connection.execute(query)).all()


async def _execs(
    connection: AsyncConnection, vm_id: int, boot: int, uuid: bytes
) -> Sequence[Row[Any]]:
    c = execs.c
    query = (
        select(execs)
        .where(c.vm_id == vm_id, c.boot == boot, c.uuid == uuid)
        .order_by(c.at)
    )
    return (await connection.execute(query)).all()


async def _memexecs(
    connection: AsyncConnection, vm_id: int, boot: int, uuid: bytes, limit: int
) -> Sequence[Row[Any]]:
    c = memexecs.c
    query = (
        select(memexecs)
        .where(c.vm_id == vm_id, c.boot == boot, c.uuid == uuid)
        .order_by(c.at, c.id)
        .limit(limit)
    )
    return (await connection.execute(query)).all()


async def fetch_tree(
    engine: AsyncEngine,
    vm_id: int,
    *,
    at: int | None,
    container_id: int | None,
    boot: int | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Processes of a tree: all, or those alive at ``at``, oldest first."""
    c = processes.c
    query = select(*process_columns()).where(c.vm_id == vm_id)
    if boot is not None:
        query = query.where(c.boot == boot)
    if container_id is not None:
        query = query.where(c.container_id == u64_to_db(container_id))
    if at is not None:
        query = query.where(
            c.started_at <= at, or_(c.exited_at.is_(None), c.exited_at > at)
        )
    query = query.order_by(c.started_at, c.uuid).limit(limit)
    async with engine.connect() as connection:
        return (await connection.execute(query)).all()


async def fetch_exec_sessions(
    engine: AsyncEngine, vm_id: int, after: tuple[int, int] | None, limit: int
) -> list[dict[str, Any]]:
    """A page of exec sessions with their container and process UUIDs."""
    c = processes.c
    key = tuple_(c.boot, c.exec_session_id)
    sessions = (
        select(
            c.boot,
            c.exec_session_id,
            func.min(c.container_id).label("container_id"),
            func.min(c.started_at).label("started_at"),
            func.count().label("processes"),
        )
        .where(c.vm_id == vm_id, c.exec_session_id != literal(0))
        .group_by(c.boot, c.exec_session_id)
        .order_by(c.boot, c.exec_session_id)
        .limit(limit)
    )
    if after is not None:
        sessions = sessions.where(key > after)
    async with engine.connect() as connection:
        heads = (await connection.execute(sessions)).all()
        if not heads:
            return []
        members = (
            await connection.execute(
                select(c.boot, c.exec_session_id, c.uuid)
                .where(
                    c.vm_id == vm_id,
                    or_(
                        *(
                            and_(
                                c.boot == h.boot, c.exec_session_id == h.exec_session_id
                            )
                            for h in heads
                        )
                    ),
                )
                .order_by(c.started_at, c.uuid)
            )
        ).all()
    by_key: dict[tuple[int, int], list[bytes]] = {}
    for member in members:
        by_key.setdefault((member.boot, member.exec_session_id), []).append(member.uuid)
    return [
        {
            "boot": head.boot,
            "exec_session_id": head.exec_session_id,
            "container_id": head.container_id,
            "started_at": head.started_at,
            "uuids": by_key.get((head.boot, head.exec_session_id), []),
        }
        for head in heads
    ]
