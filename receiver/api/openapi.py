"""The OpenAPI 3.1 description of the API, as one plain dict.

Tests check that every route of the app is described here and that the
answers match it, so a handler and its description change together. To add
an endpoint, add its path to ``PATHS`` (and its shapes to ``SCHEMAS``).
"""

from typing import Any

from aiohttp import web

routes = web.RouteTableDef()

Schema = dict[str, Any]

VM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
TIME = (
    r"^([0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))$"
)


def ref(name: str) -> Schema:
    """A reference to a shared schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object with the given properties; all required unless told."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME_TEXT: Schema = {"type": "string", "format": "date-time"}
OPT_TIME = nullable(TIME_TEXT)
OPT_STRING = nullable(STRING)
UUID_HEX: Schema = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
BOOT_HEX: Schema = {"type": "string", "pattern": "^[0-9a-f]{8}$"}
ANY_OBJECT: Schema = {"type": "object"}


def page(item: str) -> Schema:
    """A cursor-paginated list of ``item``."""
    return obj({"items": {"type": "array", "items": ref(item)}, "next": OPT_STRING})


_STREAM = nullable(ANY_OBJECT)
_PROCESS: dict[str, Schema] = {
    "uuid": UUID_HEX,
    "boot": BOOT_HEX,
    "pid": INT,
    "parent_uuid": nullable(UUID_HEX),
    "parent_pid": nullable(INT),
    "binary": OPT_STRING,
    "argv": nullable({"type": "array", "items": STRING}),
    "envp": nullable({"type": "array", "items": STRING}),
    "container_id": INT,
    "container_pid": nullable(INT),
    "exec_session_id": INT,
    "started_at": OPT_TIME,
    "exec_at": OPT_TIME,
    "exited_at": OPT_TIME,
    "exit_status": nullable(INT),
    "stdin": _STREAM,
    "stdout": _STREAM,
    "stderr": _STREAM,
    "binary_layer": nullable(
        {"type": "string", "enum": ["image", "added", "modified"]}
    ),
    "binary_written_by": nullable(UUID_HEX),
}
_EXEC: dict[str, Schema] = {
    "at": OPT_TIME,
    "pid": INT,
    "binary": OPT_STRING,
    "argv": nullable({"type": "array", "items": STRING}),
    "envp": nullable({"type": "array", "items": STRING}),
    "binary_layer": OPT_STRING,
    "binary_written_by": nullable(UUID_HEX),
    "stdin": _STREAM,
    "stdout": _STREAM,
    "stderr": _STREAM,
}
_MEMEXEC: dict[str, Schema] = {
    "at": OPT_TIME,
    "action": STRING,
    "path": OPT_STRING,
    "layer": OPT_STRING,
    "written_by": nullable(UUID_HEX),
    "start_addr": nullable(INT),
    "end_addr": nullable(INT),
    "is_initial_mmap": BOOL,
}
_VM: dict[str, Schema] = {
    "name": STRING,
    "host": STRING,
    "transport": {"type": "string", "enum": ["hybrid", "cid"]},
    "address": STRING,
    "connected": BOOL,
    "health": {"type": "string", "enum": ["disconnected", "healthy", "unhealthy"]},
    "protocol": OPT_STRING,
    "last_heartbeat": OPT_TIME,
    "boots": {
        "type": "array",
        "items": obj({"boot": BOOT_HEX, "first_seen": OPT_TIME, "last_seen": OPT_TIME}),
    },
}
_GAP_CAUSE: Schema = {
    "type": "string",
    "enum": [
        "guest_overflow",
        "host_overflow",
        "v1_reconnect",
        "v1_heartbeat_silence",
        "sequence_gap",
    ],
}
_GAP_COUNT = obj({"cause": _GAP_CAUSE, "gaps": INT, "events": INT, "unknown_size": INT})
_FINDING_COUNTS = obj(
    {
        "total": INT,
        "by_severity": {
            "type": "object",
            "description": "info, low, medium, high, critical (always present)",
            "additionalProperties": INT,
        },
    }
)
_FLEET_VM: dict[str, Schema] = {
    "id": INT,
    "name": STRING,
    "host": STRING,
    "transport": _VM["transport"],
    "address": STRING,
    "connected": BOOL,
    "health": _VM["health"],
    "protocol": OPT_STRING,
    "last_heartbeat": OPT_TIME,
    "boots": {"type": "integer", "description": "how many boots were seen"},
    "last_event_at": {
        **OPT_TIME,
        "description": "when this receiver last stored an event of the VM",
    },
    "counters": {
        **nullable(
            obj(
                {
                    "events": INT,
                    "frames": INT,
                    "bytes": INT,
                    "drops": INT,
                    "decode_errors": INT,
                }
            )
        ),
        "description": "since the serving receiver started; null for a VM "
        "of another host",
    },
    "hello": nullable(
        obj(
            {
                "software_version": OPT_STRING,
                "replay_capacity_events": nullable(INT),
            }
        )
    ),
    "gaps": {"type": "array", "items": _GAP_COUNT},
    "findings": _FINDING_COUNTS,
}
_FLEET_TOTALS = obj(
    {
        "vms": INT,
        "connected": INT,
        "events": INT,
        "drops": INT,
        "decode_errors": INT,
        "gaps": INT,
        "gap_events": INT,
        "gaps_by_cause": {"type": "array", "items": _GAP_COUNT},
        "findings": _FINDING_COUNTS,
        "hosts": INT,
        "hosts_running": INT,
    }
)
_SWITCH = nullable(
    {
        "type": "object",
        "properties": {"enabled": BOOL},
        "additionalProperties": False,
    }
)
_CONFIG: Schema = {
    "type": "object",
    "description": "ConfigurationRequest; an absent or null part turns it off",
    "properties": {
        "container_config": _SWITCH,
        "execute_config": nullable(
            {
                "type": "object",
                "properties": {
                    "enabled": BOOL,
                    "argv_limit": {"type": "integer", "minimum": 0, "maximum": 65536},
                    "envp_limit": {"type": "integer", "minimum": 0, "maximum": 65536},
                    "envp_allowlist": {
                        "type": "array",
                        "maxItems": 128,
                        "uniqueItems": True,
                        "items": {
                            "type": "string",
                            "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                        },
                    },
                },
                "additionalProperties": False,
            }
        ),
        "memexec_config": _SWITCH,
    },
    "additionalProperties": False,
}
_EFFECTIVE: dict[str, Schema] = {
    "source": {"type": "string", "enum": ["vm", "fleet", "builtin"]},
    "scope": OPT_STRING,
    "generation": INT,
    "config": ref("Config"),
    "updated_at": OPT_TIME,
    "updated_by": OPT_STRING,
}
_ANSWER = nullable(ANY_OBJECT)

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "properties": {
            "type": STRING,
            "title": STRING,
            "status": INT,
            "detail": STRING,
            "parameter": STRING,
        },
        "required": ["type", "title", "status"],
    },
    "Vm": obj(_VM),
    "VmDetail": obj(
        {
            **_VM,
            "counters": nullable(ANY_OBJECT),
            "config_response": nullable(ANY_OBJECT),
            "delivery": ANY_OBJECT,
        },
        required=[*_VM, "counters", "config_response"],
    ),
    "Gap": obj(
        {
            "id": INT,
            "boot": BOOT_HEX,
            "cause": _GAP_CAUSE,
            "first_seq": nullable(INT),
            "last_seq": nullable(INT),
            "count": nullable(INT),
            "started_at": OPT_TIME,
            "ended_at": OPT_TIME,
            "detected_at": OPT_TIME,
            "details": nullable(ANY_OBJECT),
        }
    ),
    "VmRegistration": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": VM_NAME},
            "uds_path": {"type": "string", "pattern": "^/", "maxLength": 96},
            "cid": {"type": "integer", "minimum": 3, "maximum": 2**32 - 2},
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    "Process": obj(_PROCESS),
    "FleetProcess": obj({"host": STRING, "vm": STRING, **_PROCESS}),
    "Host": obj(
        {
            "host": STRING,
            "api": STRING,
            "running": BOOL,
            "started_at": OPT_TIME,
            "heartbeat_at": OPT_TIME,
        }
    ),
    "FleetVm": obj(_FLEET_VM),
    "FleetSummary": obj(
        {
            "items": {"type": "array", "items": ref("FleetVm")},
            "next": OPT_STRING,
            "totals": _FLEET_TOTALS,
            "hosts": {"type": "array", "items": ref("Host")},
        }
    ),
    "ProcessDetail": obj(
        {
            **_PROCESS,
            "ancestors": {"type": "array", "items": ref("Process")},
            "children": {"type": "array", "items": ref("Process")},
            "execs": {"type": "array", "items": obj(_EXEC)},
            "memexecs": {"type": "array", "items": obj(_MEMEXEC)},
        }
    ),
    "Tree": obj(
        {
            "items": {"type": "array", "items": ref("Process")},
            "roots": {"type": "array", "items": UUID_HEX},
            "truncated": BOOL,
            "next": {"type": "null"},
        }
    ),
    "Container": obj(
        {
            "container_id": nullable(INT),
            "boot": BOOT_HEX,
            "pod_namespace": OPT_STRING,
            "pod_name": OPT_STRING,
            "container_name": OPT_STRING,
            "image": OPT_STRING,
            "image_id": OPT_STRING,
            "labels": {"type": "array", "items": STRING},
            "init_uuid": nullable(UUID_HEX),
            "created_at": OPT_TIME,
        }
    ),
    "ExecSession": obj(
        {
            "boot": BOOT_HEX,
            "exec_session_id": nullable(INT),
            "container_id": nullable(INT),
            "started_at": OPT_TIME,
            "processes": {"type": "array", "items": UUID_HEX},
        }
    ),
    "Event": obj(
        {
            "id": INT,
            "vm": STRING,
            "boot": BOOT_HEX,
            "type": STRING,
            "at": OPT_TIME,
            "received_at": OPT_TIME,
            "process_uuid": nullable(UUID_HEX),
            "event": nullable(ANY_OBJECT),
        }
    ),
    "Finding": obj(
        {
            "id": nullable(INT),
            "kind": {
                "type": "string",
                "description": "added_binary_executed, added_library_loaded, "
                "reverse_shell, exec_session_started, ...",
            },
            "severity": STRING,
            "vm": STRING,
            "boot": BOOT_HEX,
            "process_uuid": UUID_HEX,
            "at": OPT_TIME,
            "container_id": INT,
            "exec_session_id": INT,
            "details": ANY_OBJECT,
        }
    ),
    "Rules": obj(
        {
            "path": OPT_STRING,
            "loaded_at": OPT_TIME,
            "items": {
                "type": "array",
                "items": obj(
                    {
                        "name": STRING,
                        "kind": STRING,
                        "severity": STRING,
                        "description": STRING,
                        "match": ANY_OBJECT,
                    }
                ),
            },
            "next": {"type": "null"},
        }
    ),
    "Config": _CONFIG,
    "VmConfig": obj(
        {
            "vm": STRING,
            **_EFFECTIVE,
            "last_answer": _ANSWER,
            "pending": BOOL,
        }
    ),
    "FleetConfig": obj(_EFFECTIVE),
    "ConfigPushResult": obj(
        {
            "vm": STRING,
            "scope": STRING,
            "generation": INT,
            "change_id": INT,
            "config": ref("Config"),
            "status": {"type": "string", "enum": ["applied", "rejected", "pending"]},
            "delivery": {
                "type": "string",
                "enum": [
                    "answered",
                    "queued",
                    "timeout",
                    "not_connected",
                    "disconnected",
                ],
            },
            "answer": _ANSWER,
            "sessions": {
                "type": "array",
                "items": obj({"delivery": STRING, "answer": _ANSWER}),
            },
            "detail": STRING,
        }
    ),
    "FleetPushResult": obj(
        {
            "scope": {"const": "*"},
            "generation": INT,
            "change_id": INT,
            "config": ref("Config"),
            "status": {"const": "stored"},
            "vms": {"type": "object"},
        }
    ),
    "ConfigChange": obj(
        {
            "id": INT,
            "scope": STRING,
            "generation": INT,
            "config": ref("Config"),
            "changed_at": OPT_TIME,
            "changed_by": STRING,
            "status": {
                "type": "string",
                "enum": ["pending", "applied", "rejected", "superseded", "stored"],
            },
            "response": nullable(ANY_OBJECT),
            "answered_at": OPT_TIME,
        }
    ),
}


def query(name: str, schema: Schema, description: str) -> Schema:
    """An optional query parameter."""
    return {"name": name, "in": "query", "schema": schema, "description": description}


def path_param(name: str, schema: Schema) -> Schema:
    """A path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": schema}


VM_PATH = path_param("vm", {"type": "string"})
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")
CURSOR = query("cursor", STRING, "the `next` of the previous page")
BOOT = query("boot", {"type": "string", "pattern": "^[0-9A-Fa-f]{8}$"}, "a boot")
U64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}


def time_query(name: str, description: str) -> Schema:
    """A time parameter: RFC 3339 or integer nanoseconds."""
    return query(name, {"type": "string", "pattern": TIME}, description)


def _problem(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }


ERRORS = {
    "400": _problem("a parameter is invalid; `parameter` names it"),
    "401": _problem("no token, or an unknown one"),
    "403": _problem("the token's role may not do this"),
    "404": _problem("no such VM, process or path"),
    "409": _problem("conflicts with the current state"),
    "413": _problem("the body is too large"),
    "422": _problem("the request cannot be carried out"),
    "503": _problem("too many clients"),
}


def ok(schema: Schema, description: str = "OK", status: str = "200") -> Schema:
    """A JSON success response."""
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def errors(*codes: str) -> dict[str, Schema]:
    """The listed error responses."""
    return {code: ERRORS[code] for code in codes}


def operation(
    summary: str,
    responses: dict[str, Schema],
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
) -> Schema:
    """One operation; every one of them needs a token."""
    op: Schema = {
        "summary": summary,
        "operationId": summary.lower().replace(" ", "_").replace("'", ""),
        "responses": responses,
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return op


READ = ("400", "401")
READ_VM = ("400", "401", "404")
HOST = query(
    "host",
    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"},
    "a hypervisor host's name",
)
PROCESS_FILTERS = [
    BOOT,
    query("container_id", U64, "only this container"),
    query("exec_session_id", U64, "only this exec session"),
    query(
        "alive",
        {
            "type": "string",
            "enum": ["true", "false", "1", "0", "yes", "no"],
        },
        "only running, or only exited, processes",
    ),
    query(
        "binary",
        {"type": "string", "minLength": 1, "maxLength": 256},
        "binary path contains",
    ),
    time_query("since", "started at or after"),
    time_query("until", "started before"),
]

PATHS: dict[str, Schema] = {
    "/healthz": {
        "get": {
            "summary": "liveness",
            "operationId": "healthz",
            "security": [],
            "responses": ok(obj({"status": {"const": "ok"}})),
        }
    },
    "/metrics": {
        "get": operation(
            "Prometheus metrics",
            {
                "200": {
                    "description": "the Prometheus text format",
                    "content": {"text/plain": {"schema": STRING}},
                },
                **errors("401"),
            },
        )
    },
    "/api/v1/openapi.json": {
        "get": operation("This document", {**ok(ANY_OBJECT), **errors("401")})
    },
    "/api/v1/vms": {
        "get": operation(
            "List VMs of every host",
            {**ok(page("Vm")), **errors("400", "401")},
            [HOST],
        ),
        "post": operation(
            "Register a VM",
            {
                **ok(ref("Vm"), "registered; its listener is open", "201"),
                **errors("400", "401", "403", "409", "413", "422"),
            },
            body=ref("VmRegistration"),
        ),
    },
    "/api/v1/vms/{vm}": {
        "parameters": [VM_PATH],
        "get": operation("Get a VM", {**ok(ref("VmDetail")), **errors(*READ_VM)}),
        "delete": operation(
            "Delete a VM",
            {
                "204": {"description": "removed; its history stays stored"},
                **errors("401", "403", "404"),
            },
        ),
    },
    "/api/v1/vms/{vm}/containers": {
        "parameters": [VM_PATH],
        "get": operation(
            "List containers",
            {**ok(page("Container")), **errors(*READ_VM)},
            [LIMIT, CURSOR],
        ),
    },
    "/api/v1/hosts": {
        "get": operation(
            "List the receivers (hypervisor hosts) sharing this database",
            {**ok(page("Host")), **errors("401")},
        ),
    },
    "/api/v1/fleet/summary": {
        "get": operation(
            "Summarize the fleet",
            {**ok(ref("FleetSummary")), **errors("400", "401")},
            [LIMIT, CURSOR, HOST],
        ),
    },
    "/api/v1/processes": {
        "get": operation(
            "List processes of every VM on every host",
            {**ok(page("FleetProcess")), **errors("400", "401")},
            [
                LIMIT,
                CURSOR,
                HOST,
                query("vm", {"type": "string", "pattern": VM_NAME}, "only this VM"),
                *PROCESS_FILTERS,
            ],
        ),
    },
    "/api/v1/vms/{vm}/processes": {
        "parameters": [VM_PATH],
        "get": operation(
            "List processes",
            {**ok(page("Process")), **errors(*READ_VM)},
            [LIMIT, CURSOR, *PROCESS_FILTERS],
        ),
    },
    "/api/v1/vms/{vm}/processes/{uuid}": {
        "parameters": [VM_PATH, path_param("uuid", UUID_HEX)],
        "get": operation(
            "Get a process", {**ok(ref("ProcessDetail")), **errors(*READ_VM)}
        ),
    },
    "/api/v1/vms/{vm}/tree": {
        "parameters": [VM_PATH],
        "get": operation(
            "Get the process tree",
            {**ok(ref("Tree")), **errors(*READ_VM)},
            [
                time_query("at", "only what was alive then"),
                query("container_id", U64, "only this container"),
                BOOT,
            ],
        ),
    },
    "/api/v1/vms/{vm}/exec-sessions": {
        "parameters": [VM_PATH],
        "get": operation(
            "List exec sessions",
            {**ok(page("ExecSession")), **errors(*READ_VM)},
            [LIMIT, CURSOR],
        ),
    },
    "/api/v1/vms/{vm}/gaps": {
        "parameters": [VM_PATH],
        "get": operation(
            "List a VM's delivery gaps: what was lost, where and why",
            {**ok(page("Gap")), **errors(*READ_VM)},
            [
                LIMIT,
                CURSOR,
                query("boot", BOOT_HEX, "only this boot (machine id)"),
                query("cause", STRING, "only gaps with this cause"),
            ],
        ),
    },
    "/api/v1/vms/{vm}/config": {
        "parameters": [VM_PATH],
        "get": operation(
            "Get a VM's configuration", {**ok(ref("VmConfig")), **errors(*READ_VM)}
        ),
        "put": operation(
            "Set a VM's configuration",
            {
                **ok(ref("ConfigPushResult"), "the guest answered"),
                **ok(
                    ref("ConfigPushResult"),
                    "stored and pending: not connected, or no answer in time",
                    "202",
                ),
                **errors("400", "401", "403", "404", "409", "413"),
            },
            body=ref("Config"),
        ),
    },
    "/api/v1/vms/{vm}/config/history": {
        "parameters": [VM_PATH],
        "get": operation(
            "List a VM's configuration changes",
            {**ok(page("ConfigChange")), **errors(*READ_VM)},
            [LIMIT, CURSOR],
        ),
    },
    "/api/v1/config": {
        "get": operation(
            "Get the fleet default configuration",
            {**ok(ref("FleetConfig")), **errors("401")},
        ),
        "put": operation(
            "Set the fleet default configuration",
            {
                **ok(ref("FleetPushResult")),
                **errors("400", "401", "403", "409", "413"),
            },
            body=ref("Config"),
        ),
    },
    "/api/v1/config/history": {
        "get": operation(
            "List fleet default changes",
            {**ok(page("ConfigChange")), **errors(*READ)},
            [LIMIT, CURSOR],
        ),
    },
    "/api/v1/events": {
        "get": operation(
            "List raw events",
            {**ok(page("Event")), **errors(*READ_VM)},
            [
                LIMIT,
                CURSOR,
                query("vm", {"type": "string", "pattern": VM_NAME}, "only this VM"),
                BOOT,
                query(
                    "type",
                    {
                        "type": "string",
                        "enum": [
                            "execute",
                            "clone",
                            "exit",
                            "memexec",
                            "container",
                            "enumproc",
                        ],
                    },
                    "only this event type",
                ),
                time_query("since", "at or after"),
                time_query("until", "before"),
            ],
        ),
    },
    "/api/v1/findings": {
        "get": operation(
            "List findings",
            {**ok(page("Finding")), **errors(*READ_VM)},
            [
                LIMIT,
                CURSOR,
                query("vm", {"type": "string", "pattern": VM_NAME}, "only this VM"),
                query(
                    "kind",
                    {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                    "only this kind",
                ),
                time_query("since", "at or after"),
            ],
        ),
    },
    "/api/v1/rules": {
        "get": operation("List detection rules", {**ok(ref("Rules")), **errors("401")}),
    },
    "/api/v1/rules/reload": {
        "post": operation(
            "Reload detection rules",
            {
                **ok(ref("Rules")),
                **errors("401", "403", "409", "422"),
            },
        ),
    },
    "/api/v1/whoami": {
        "get": operation(
            "Who am I",
            {
                **ok(
                    obj(
                        {
                            "label": STRING,
                            "role": {"type": "string", "enum": ["viewer", "operator"]},
                        }
                    )
                ),
                **errors("401"),
            },
        ),
    },
    "/api/v1/stream": {
        "get": operation(
            "Stream live events and findings",
            {
                "200": {
                    "description": "server-sent events: `event`, `finding`, and "
                    "`missed` ({missed: N}) when a slow client lost messages",
                    "content": {"text/event-stream": {"schema": STRING}},
                },
                **errors("400", "401", "404", "503"),
            },
            [
                query("vm", {"type": "string", "pattern": VM_NAME}, "only this VM"),
                query(
                    "kind",
                    {
                        "type": "string",
                        "pattern": "^(event|finding)(,(event|finding))*$",
                    },
                    "comma-separated kinds",
                ),
            ],
        ),
    },
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "csm-receiver",
            "version": "1",
            "description": "Process trees and findings of micro-VM guests.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/api/v1/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI document."""
    return web.json_response(document())
