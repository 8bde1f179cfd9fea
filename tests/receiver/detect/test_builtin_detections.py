"""Built-in detections fire on what an attack looks like and stay quiet on
benign look-alikes, from synthetic guest streams through the real receiver."""

from tests.conftest import RunningReceiver
from tests.receiver.detect.streams import (
    GuestStream,
    listening,
    pipe,
    tcp,
    tty,
)
from tests.receiver.helpers import all_items, stream_and_store

SHIM, APP = 100, 200
CONTAINER = 3


def _pod(stream: GuestStream) -> None:
    """init, a container shim and a container's server process."""
    stream.execute(1, "/sbin/init", ["/sbin/init"], layer=None)
    stream.execute(SHIM, "/usr/bin/containerd-shim", ["shim"], parent=1, layer=None)
    stream.execute(
        APP, "/usr/sbin/nginx", ["nginx"], parent=SHIM, container_id=CONTAINER
    )
    stream.container(CONTAINER, "nginx", APP)


async def _findings(receiver: RunningReceiver, stream: GuestStream) -> list[dict]:
    await stream_and_store(receiver, "vm-a", stream.data())
    return await all_items(receiver, "/api/v1/findings")


def _kinds(findings: list[dict]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["details"].get("binary") or "") for f in findings)


async def test_shells_on_pipes_and_terminals_are_not_reverse_shells(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    in_pod = {"parent": APP, "container_id": CONTAINER}
    stream.execute(
        300, "/bin/sh", ["sh", "-c", "a | b"], stdin=pipe(), stdout=pipe(), **in_pod
    )
    stream.execute(301, "/bin/bash", ["bash"], stdin=tty(), stdout=tty(), **in_pod)
    # A socket on one side only is a shell feeding a network client.
    stream.execute(
        302, "/bin/sh", ["sh"], stdin=pipe(), stdout=tcp("198.51.100.7", 80), **in_pod
    )
    # A socket without a peer (listening, or not connected) is no remote.
    stream.execute(
        303, "/bin/sh", ["sh"], stdin=listening(), stdout=listening(), **in_pod
    )
    assert await _findings(receiver, stream) == []


async def test_socket_daemons_without_a_shell_are_not_reverse_shells(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    stream.execute(400, "/usr/sbin/inetd", ["inetd"], parent=1, layer=None)
    peer = tcp("198.51.100.20", 21)
    # inetd-style: the accepted connection is the service's stdin and stdout.
    stream.execute(
        401,
        "/usr/sbin/in.ftpd",
        ["in.ftpd"],
        parent=400,
        layer=None,
        stdin=peer,
        stdout=peer,
    )
    stream.execute(
        402,
        "/usr/sbin/sshd",
        ["sshd", "-i"],
        parent=400,
        layer=None,
        stdin=peer,
        stdout=peer,
    )
    # A shell script service that inetd starts on the connection by design.
    stream.execute(
        403,
        "/bin/sh",
        ["sh", "/srv/echo.sh"],
        parent=400,
        layer=None,
        stdin=peer,
        stdout=peer,
    )
    assert await _findings(receiver, stream) == []


async def test_shells_and_interpreters_on_a_remote_socket_are_reverse_shells(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    in_pod = {"parent": APP, "container_id": CONTAINER}
    v4 = tcp("203.0.113.9", 4444)
    v6 = tcp("2001:db8::9", 443, local="2001:db8::5")
    stream.execute(500, "/bin/sh", ["sh"], stdin=v4, stdout=v4, **in_pod)
    stream.execute(
        501,
        "/usr/bin/python3.12",
        ["python3", "-c", "..."],
        stdin=v6,
        stdout=v6,
        **in_pod,
    )
    stream.execute(502, "/bin/busybox", ["sh"], stdin=v4, stdout=v4, **in_pod)
    stream.execute(503, "/bin/busybox", ["wget"], stdin=v4, stdout=v4, **in_pod)
    findings = await _findings(receiver, stream)
    assert _kinds(findings) == [
        ("reverse_shell", "/bin/busybox"),
        ("reverse_shell", "/bin/sh"),
        ("reverse_shell", "/usr/bin/python3.12"),
    ]
    python = next(f for f in findings if f["details"]["binary"].endswith("3.12"))
    assert python["details"]["remote"] == {
        "family": 10,
        "ip": "2001:db8::9",
        "port": 443,
    }
    assert python["details"]["parent_binary"] == "/usr/sbin/nginx"
    assert python["details"]["container"]["container_name"] == "nginx"


async def test_libraries_from_the_image_layer_do_not_fire(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    stream.memexec(APP, "/usr/lib/libssl.so.3", "image", container_id=CONTAINER)
    stream.memexec(
        APP, "/usr/sbin/nginx", "image", container_id=CONTAINER, initial=True
    )
    stream.memexec(1, "/usr/lib/libc.so.6", None)
    assert await _findings(receiver, stream) == []


async def test_upper_layer_files_fire_once_per_process_and_kind(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    in_pod = {"parent": APP, "container_id": CONTAINER}
    stream.execute(600, "/usr/bin/patched", ["patched"], layer="modified", **in_pod)
    stream.memexec(600, "/tmp/a.so", "added", container_id=CONTAINER)
    stream.memexec(600, "/tmp/b.so", "modified", container_id=CONTAINER)
    # The program's own mapping is the exec, already reported.
    stream.memexec(
        600, "/usr/bin/patched", "modified", container_id=CONTAINER, initial=True
    )
    findings = await _findings(receiver, stream)
    assert sorted(f["kind"] for f in findings) == [
        "added_binary_executed",
        "added_library_loaded",
    ]
    executed = next(f for f in findings if f["kind"] == "added_binary_executed")
    assert executed["details"]["layer"] == "modified"
    assert "written_by_uuid" not in executed["details"]
    loaded = next(f for f in findings if f["kind"] == "added_library_loaded")
    assert loaded["details"]["path"] == "/tmp/a.so"


async def test_an_exec_session_is_reported_once_with_its_first_command(
    receiver: RunningReceiver,
) -> None:
    stream = GuestStream()
    _pod(stream)
    session = {"container_id": CONTAINER, "exec_session_id": 9}
    stream.execute(700, "/bin/bash", ["bash"], parent=SHIM, stdin=tty(), **session)
    stream.execute(701, "/bin/ls", ["ls", "-l"], parent=700, **session)
    await stream_and_store(receiver, "vm-a", stream.data())
    # Later commands of the same session, on a new connection.
    stream.execute(702, "/bin/cat", ["cat", "/etc/passwd"], parent=700, **session)
    findings = await _findings(receiver, stream)
    assert [(f["kind"], f["details"]["argv"]) for f in findings] == [
        ("exec_session_started", ["bash"])
    ]
    assert findings[0]["exec_session_id"] == 9
    assert findings[0]["details"]["container"]["pod_name"] == "web-1"


async def test_memory_evictions_fall_back_to_the_store(
    receiver: RunningReceiver,
) -> None:
    detector = receiver.service.detector
    stream = GuestStream()
    _pod(stream)
    session = {"container_id": CONTAINER, "exec_session_id": 9}
    stream.execute(700, "/bin/bash", ["bash"], parent=SHIM, **session)
    await stream_and_store(receiver, "vm-a", stream.data())

    # What a restarted receiver knows: nothing but the store.
    memory = detector.memory
    memory.binaries = type(memory.binaries)(10)
    memory.containers = type(memory.containers)(10)
    memory.sessions = type(memory.sessions)(10)
    memory.reported = type(memory.reported)(10)
    peer = tcp("203.0.113.9", 4444)
    stream.execute(
        701, "/bin/sh", ["sh"], parent=APP, stdin=peer, stdout=peer, **session
    )
    findings = await _findings(receiver, stream)
    assert sorted(f["kind"] for f in findings) == [
        "exec_session_started",
        "reverse_shell",
    ]
    shell = next(f for f in findings if f["kind"] == "reverse_shell")
    assert shell["details"]["parent_binary"] == "/usr/sbin/nginx"
    assert shell["details"]["container"]["container_name"] == "nginx"
