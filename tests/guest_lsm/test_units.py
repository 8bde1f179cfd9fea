"""Behaviour of the agent's pure parts: budgets, allowlists, identities, config."""

import struct

import pytest

from csm_wire.gen import schema_pb2 as pb
from guest_lsm.config import CollectorConfig
from guest_lsm.encode.events import apply_budget, file_message, filter_env
from guest_lsm.enrich.identity import TICK_NS, Identity, machine_id_from_boot_id
from guest_lsm.enrich.processes import ProcessTable
from guest_lsm.errors import ConfigError
from guest_lsm.kernel.records import join_path, split_strings
from guest_lsm.raw import FileRef, ProcIds, SocketAddress, Writer
from guest_lsm.stats import Counters, DropCause
from guest_lsm.transport.outbox import Outbox


def test_budget_keeps_whole_strings_that_fit() -> None:
    assert apply_budget([b"ab", b"cd"], 6) == ([b"ab", b"cd"], 0)


def test_budget_cuts_the_string_that_crosses_it() -> None:
    kept, cut = apply_budget([b"/bin/echo", b"hello"], 8)
    assert kept == [b"/bin/ec"]
    assert cut == 2 + 6


def test_zero_budget_sends_nothing() -> None:
    assert apply_budget([b"a"], 0) == ([], 1)


def test_allowlist_matches_exact_names() -> None:
    env = [b"PATH=/bin", b"PATHX=1", b"LANG=C", b"NOEQUALS"]
    assert filter_env(env, ["PATH", "LANG"]) == [b"PATH=/bin", b"LANG=C"]
    assert filter_env(env, []) == env


def test_uuid_layout_is_machine_start_tgid_little_endian() -> None:
    identity = Identity(machine_id=0x11223344, boot_time_ns=10**18, boot_offset_ns=0)
    uuid = identity.uuid(4242, 3 * TICK_NS + 5)
    machine, start, tgid = struct.unpack("<IQI", uuid)
    assert (machine, start, tgid) == (0x11223344, 10**18 + 3 * TICK_NS, 4242)


def test_machine_id_is_never_zero_and_stable() -> None:
    first = machine_id_from_boot_id("0d5f2c3e-1111-2222-3333-444455556666\n")
    assert first == machine_id_from_boot_id("0d5f2c3e-1111-2222-3333-444455556666")
    assert first != 0


def test_request_with_absent_parts_turns_them_off() -> None:
    request = pb.ConfigurationRequest(
        execute_config=pb.ExecuteCollectorConfig(
            enabled=True, argv_limit=64, envp_allowlist=["PATH"]
        )
    )
    config = CollectorConfig.from_request(request)
    assert config.execute_enabled and config.argv_limit == 64
    assert not config.memexec_enabled and not config.container_enabled
    assert config.envp_allowlist == ["PATH"]


def test_local_config_rejects_unknown_keys_and_bad_types() -> None:
    with pytest.raises(ConfigError):
        CollectorConfig.from_mapping({"argv_limt": 3})
    with pytest.raises(ConfigError):
        CollectorConfig.from_mapping({"execute_enabled": "yes"})


def test_kernel_paths_are_joined_root_first() -> None:
    assert join_path(b"sh\0bin\0") == b"/bin/sh"
    assert join_path(b"") == b"/"
    assert split_strings(b"a\0b\0") == [b"a", b"b"]


def test_overlay_file_carries_layers_and_writer() -> None:
    ref = FileRef(path=b"/x", ino=7, overlay=True, upper=True, writer=Writer(5, 9))
    message = file_message(ref, b"u" * 16)
    assert message.overlayfs.upper_layer and not message.overlayfs.lower_layer
    assert message.overlayfs.modified_uuid == b"u" * 16


def test_socket_file_carries_both_ends() -> None:
    local = SocketAddress(2, b"\x7f\0\0\1", 5000)
    ref = FileRef(path=b"", mode=0o140777, ino=9, local=local, remote=local)
    message = file_message(ref)
    assert message.fullpath == b"socket:[9]"
    assert message.socket.remote.port == 5000


def _ids(tgid: int, ppid: int, inum: int = 1, level: int = 0) -> ProcIds:
    return ProcIds(tgid, ppid, tgid * TICK_NS, ppid * TICK_NS, inum, level, tgid, 0)


def test_container_tag_rules_and_exec_sessions() -> None:
    table = ProcessTable(Identity(1, 0, 0))
    overlay = FileRef(path=b"/bin/sh", overlay=True, upper=False, lower=True)
    table.on_fork(_ids(10, 1))
    assert table.on_exec(_ids(10, 1, inum=99, level=1), overlay) is not None
    table.on_fork(_ids(11, 10, inum=99, level=1))
    table.on_exec(_ids(11, 10, inum=99, level=1), overlay)
    inside = table.membership(table.get(11))  # type: ignore[arg-type]
    assert inside.container_id == 1 and inside.exec_session_id == 0
    # Entering from outside: no inherited tag, so a new one, an exec session.
    table.on_fork(_ids(20, 1))
    table.on_exec(_ids(20, 1, inum=99, level=1), overlay)
    entered = table.membership(table.get(20))  # type: ignore[arg-type]
    assert entered.container_id == 1 and entered.exec_session_id == 2
    table.on_fork(_ids(21, 20, inum=99, level=1))
    child = table.membership(table.get(21))  # type: ignore[arg-type]
    assert child.exec_session_id == 2


async def test_outbox_drops_by_cause_and_never_blocks() -> None:
    counters = Counters()
    outbox = Outbox(2, counters)
    assert not outbox.put(b"x")
    outbox.accepting = True
    assert outbox.put(b"a") and outbox.put(b"b")
    assert not outbox.put(b"c")
    assert counters.drops[DropCause.DISCONNECTED.value] == 1
    assert counters.drops[DropCause.QUEUE_FULL.value] == 1
    assert counters.queue_high_water == 2
    assert outbox.take_all() == [b"a", b"b"]
