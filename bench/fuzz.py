"""Longer fuzzing of the decoder and the guest session (v1 and v2 paths).

CI runs the same target for a few thousand inputs; this runs it for as long
as asked, seeded with the recorded vectors:

    python -m bench.fuzz --seconds 1800
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def main(argv: list[str] | None = None) -> int:
    """Run libFuzzer over the session target; non-zero if it found a crash."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz")
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--corpus", type=Path, help="keep the corpus here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="csm-fuzz-") as scratch:
        corpus = args.corpus or Path(scratch)
        corpus.mkdir(parents=True, exist_ok=True)
        for vector in VECTORS.glob("*.bin"):
            (corpus / vector.name).write_bytes(vector.read_bytes())
        command = [
            sys.executable,
            "-m",
            "tests.fuzz.session_target",
            f"-max_total_time={args.seconds}",
            "-max_len=8192",
            "-print_final_stats=1",
            str(corpus),
        ]
        print("fuzzing for", args.seconds, "s:", " ".join(command), flush=True)
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
