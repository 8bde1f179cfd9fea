"""Bounded coverage-guided fuzzing of the decoder and session (atheris)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import read_vector

ROOT = Path(__file__).resolve().parents[2]
CI_RUNS = int(os.environ.get("CSM_FUZZ_RUNS", "4000"))


def test_fuzzing_the_session_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "web-pod").write_bytes(read_vector("web-pod.bin"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.session_target",
            f"-runs={CI_RUNS}",
            "-max_len=4096",
            "-seed=1",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr
