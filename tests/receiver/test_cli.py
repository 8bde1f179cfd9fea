"""``csm-receiver serve`` as a user runs it: defaults, signals, bad flags."""

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver.cli import main
from tests.conftest import read_vector
from tests.receiver.helpers import ReceiverProcess


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_without_flags_runs_on_sqlite_under_var(
    tmp_path: Path, signum: int
) -> None:
    receiver = ReceiverProcess(tmp_path)
    code = receiver.stop(signum)
    err = receiver.stderr
    assert code == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "var" / "csm.db").exists()
    token_file = tmp_path / "var" / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 32


def test_sigterm_flushes_what_the_receiver_holds(tmp_path: Path) -> None:
    uds = tmp_path / "fc.vsock"
    # A long batch interval: nothing reaches the database before the signal.
    receiver = ReceiverProcess(
        tmp_path,
        "--no-vsock",
        "--vm",
        f"web={uds}".replace("=", "=hybrid:"),
        "--batch-interval-s",
        "60",
        "--batch-max-events",
        "100000",
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
        guest.connect(os.fspath(tmp_path / "fc.vsock_4444"))
        guest.sendall(read_vector("web-pod.bin"))
        time.sleep(0.5)
    assert receiver.stop(signal.SIGTERM) == 0, receiver.stderr
    with sqlite3.connect(tmp_path / "var" / "csm.db") as db:
        (count,) = db.execute("SELECT count(*) FROM processes").fetchone()
        (events,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert count == 8
    assert events == 13


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--vm", "bad name=hybrid:/x"], "invalid VM name"),
        (["serve", "--vm", "a=floppy:/x"], "unknown transport"),
        (["serve", "--api", "nowhere"], "HOST:PORT"),
        (["serve", "--port", "many"], "--port"),
    ],
)
def test_bad_flags_end_with_one_line_and_non_zero_exit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "serve",
            "--no-vsock",
            "--api",
            "127.0.0.1:0",
            "--db",
            "postgresql+asyncpg://nobody@127.0.0.1:1/none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "csm-receiver: database" in result.stderr
