"""The built-in detections, as functions of one event's facts."""

import posixpath
import re
from typing import Any

from receiver.detect.facts import MappingFacts, ProcessFacts
from receiver.detect.findings import BUILTIN_SEVERITY, BuiltinKind, Finding
from receiver.ingest.records import Layer

UPPER_LAYERS = frozenset({Layer.ADDED, Layer.MODIFIED})

# Programs that read commands from stdin: shells and script interpreters.
SHELL_NAME = re.compile(
    r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|csh|tcsh|fish|pwsh"
    r"|python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|node|nodejs"
    r"|lua[0-9.]*|tclsh[0-9.]*|irb)$"
)
MULTICALL_BINARIES = frozenset({"busybox", "toybox"})

# Super-servers hand an accepted connection to a service as its stdin and
# stdout by design, so what they start is not a reverse shell.
SUPER_SERVERS = frozenset(
    {"inetd", "xinetd", "tcpserver", "s6-tcpserver", "tcpsvd", "systemd"}
)

INET_FAMILIES = frozenset({2, 10})


def basename(path: str | None) -> str:
    """The last component of a path, empty when unknown."""
    return posixpath.basename(path) if path else ""


def is_shell(facts: ProcessFacts) -> bool:
    """True when the process runs a shell or an interpreter."""
    name = basename(facts.binary)
    if name in MULTICALL_BINARIES and facts.argv:
        name = basename(facts.argv[0])
    return SHELL_NAME.match(name) is not None


def _connected_inet(stream: dict[str, Any] | None) -> bool:
    if not stream or stream.get("kind") != "socket":
        return False
    remote = stream.get("remote")
    return isinstance(remote, dict) and remote.get("family") in INET_FAMILIES


def has_socket_stdio(facts: ProcessFacts) -> bool:
    """True when stdin and stdout are connected INET or INET6 sockets."""
    streams = facts.streams
    return _connected_inet(streams.get("stdin")) and _connected_inet(
        streams.get("stdout")
    )


def reverse_shell_candidate(facts: ProcessFacts) -> bool:
    """A shell on a network socket; the parent decides if it is by design."""
    return facts.event == "execute" and is_shell(facts) and has_socket_stdio(facts)


def reverse_shell(facts: ProcessFacts) -> Finding | None:
    """A shell or interpreter talking to a remote peer through its stdio."""
    if not reverse_shell_candidate(facts):
        return None
    if basename(facts.parent_binary) in SUPER_SERVERS:
        return None
    stdin = facts.streams["stdin"]
    return process_finding(
        facts,
        BuiltinKind.REVERSE_SHELL,
        {
            "binary": facts.binary,
            "argv": facts.argv,
            "parent_uuid": _hex(facts.parent_uuid),
            "parent_binary": facts.parent_binary,
            "local": stdin.get("local"),
            "remote": stdin.get("remote"),
        },
    )


def added_binary_executed(facts: ProcessFacts) -> Finding | None:
    """An executable from the container's upper layer (added or modified)."""
    if facts.layer not in UPPER_LAYERS:
        return None
    details: dict[str, Any] = {
        "binary": facts.binary,
        "argv": facts.argv,
        "layer": facts.layer,
        "parent_uuid": _hex(facts.parent_uuid),
    }
    if facts.written_by is not None:
        details["written_by_uuid"] = facts.written_by.hex()
    return process_finding(facts, BuiltinKind.ADDED_BINARY_EXECUTED, details)


def added_library_loaded(mapping: MappingFacts) -> Finding | None:
    """An executable mapping of an upper-layer file other than the program."""
    if mapping.is_initial_mmap or mapping.layer not in UPPER_LAYERS:
        return None
    details: dict[str, Any] = {"path": mapping.path, "layer": mapping.layer}
    if mapping.written_by is not None:
        details["written_by_uuid"] = mapping.written_by.hex()
    kind = BuiltinKind.ADDED_LIBRARY_LOADED
    return Finding(
        vm_id=mapping.vm_id,
        vm=mapping.vm,
        boot=mapping.boot,
        uuid=mapping.uuid,
        kind=kind,
        severity=BUILTIN_SEVERITY[kind],
        at=mapping.at,
        container_id=mapping.container_id,
        exec_session_id=mapping.exec_session_id,
        details=details,
    )


def exec_session_started(facts: ProcessFacts) -> Finding:
    """Someone entered a container: the exec session's first process."""
    return process_finding(
        facts,
        BuiltinKind.EXEC_SESSION_STARTED,
        {
            "binary": facts.binary,
            "argv": facts.argv,
            "parent_uuid": _hex(facts.parent_uuid),
        },
    )


def process_finding(
    facts: ProcessFacts, kind: BuiltinKind, details: dict[str, Any]
) -> Finding:
    """A built-in finding about the process ``facts`` describes."""
    return Finding(
        vm_id=facts.vm_id,
        vm=facts.vm,
        boot=facts.boot,
        uuid=facts.uuid,
        kind=kind,
        severity=BUILTIN_SEVERITY[kind],
        at=facts.at,
        container_id=facts.container_id,
        exec_session_id=facts.exec_session_id,
        details=details,
    )


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None
