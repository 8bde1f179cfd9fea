"""JSON shapes of the API, from database rows."""

import json
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import Row

from receiver.store.codec import split_strings, u64_from_db
from receiver.timefmt import format_ns


def json_response(body: Any) -> web.Response:
    """A JSON response; big trees encode several times faster with orjson."""
    try:
        encoded = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # orjson refuses lone surrogates, which only an old row can hold.
        encoded = json.dumps(body).encode()
    return web.Response(body=encoded, content_type="application/json", charset="utf-8")


def text(value: bytes | None) -> str | None:
    """Show guest bytes as text; invalid UTF-8 becomes ``\\xNN`` escapes."""
    if value is None:
        return None
    return value.decode("utf-8", "backslashreplace")


def texts(packed: bytes | None) -> list[str] | None:
    """Show a NUL-joined list of guest strings."""
    if packed is None:
        return None
    return [item.decode("utf-8", "backslashreplace") for item in split_strings(packed)]


def uuid_hex(value: bytes | None) -> str | None:
    """A UUID as 32 hex digits."""
    return value.hex() if value is not None else None


def boot_hex(boot: int) -> str:
    """A boot (the guest's machine id) as 8 hex digits."""
    return f"{boot:08x}"


def unsigned(value: int | None) -> int | None:
    """A guest u64 read back from a signed column."""
    return u64_from_db(value) if value is not None else None


def process(row: Sequence[Any]) -> dict[str, Any]:
    """One process as the API shows it, from a row of ``PROCESS_COLUMNS``."""
    # Unpacking by position costs a tenth of reading a Row by name, which
    # matters for trees of thousands of processes.
    (
        uuid,
        boot,
        pid,
        parent_uuid,
        parent_pid,
        binary,
        argv,
        envp,
        container_id,
        container_pid,
        exec_session_id,
        started_at,
        exec_at,
        exited_at,
        streams_json,
        binary_layer,
        binary_written_by,
        exit_status,
    ) = row
    streams = orjson.loads(streams_json) if streams_json else {}
    return {
        "uuid": uuid.hex(),
        "boot": f"{boot:08x}",
        "pid": pid,
        "parent_uuid": parent_uuid.hex() if parent_uuid is not None else None,
        "parent_pid": parent_pid,
        "binary": text(binary),
        "argv": texts(argv),
        "envp": texts(envp),
        "container_id": unsigned(container_id) or 0,
        "container_pid": container_pid,
        "exec_session_id": unsigned(exec_session_id) or 0,
        "started_at": format_ns(started_at),
        "exec_at": format_ns(exec_at),
        "exited_at": format_ns(exited_at),
        "exit_status": exit_status,
        "stdin": streams.get("stdin"),
        "stdout": streams.get("stdout"),
        "stderr": streams.get("stderr"),
        "binary_layer": binary_layer,
        "binary_written_by": uuid_hex(binary_written_by),
    }


def exec_record(row: Row[Any]) -> dict[str, Any]:
    """One exec of a process (a process may exec several times)."""
    streams = json.loads(row.streams) if row.streams else {}
    return {
        "at": format_ns(row.at),
        "pid": row.pid,
        "binary": text(row.binary),
        "argv": texts(row.argv),
        "envp": texts(row.envp),
        "binary_layer": row.binary_layer,
        "binary_written_by": uuid_hex(row.binary_written_by),
        "stdin": streams.get("stdin"),
        "stdout": streams.get("stdout"),
        "stderr": streams.get("stderr"),
    }


MEMEXEC_ACTIONS = {0: "undefined", 1: "mprotect", 2: "mmap_file"}


def memexec(row: Row[Any]) -> dict[str, Any]:
    """One executable mapping."""
    return {
        "at": format_ns(row.at),
        "action": MEMEXEC_ACTIONS.get(row.action, str(row.action)),
        "path": text(row.path),
        "layer": row.layer,
        "written_by": uuid_hex(row.written_by),
        "start_addr": unsigned(row.start_addr),
        "end_addr": unsigned(row.end_addr),
        "is_initial_mmap": row.is_initial_mmap,
    }


def container(row: Row[Any]) -> dict[str, Any]:
    """One container with its pod metadata (null until the guest reports it)."""
    return {
        "container_id": unsigned(row.container_id),
        "boot": boot_hex(row.boot),
        "pod_namespace": text(row.pod_namespace),
        "pod_name": text(row.pod_name),
        "container_name": text(row.container_name),
        "image": text(row.image),
        "image_id": text(row.image_id),
        "labels": texts(row.labels) or [],
        "init_uuid": uuid_hex(row.init_uuid),
        "created_at": format_ns(row.created_at),
    }
