"""Exec throughput with and without the guest collector, and with its peers.

One worker (a shell loop) execs /bin/true N times; each condition's rate is
compared with the untraced rate measured just before and after it:
no tracer, with ``csm-guest`` (BPF tracepoints, and the proc
connector), with auditd holding an execve rule, and with bpftrace on
sched_process_exec, all in one run. Needs root. Run it with

    python -m bench.guest_exec_bench [--execs 2000] [--repeats 3] [--json]
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TRACEFS = Path("/sys/kernel/tracing")
AUDIT_KEY = "csm-exec-bench"
TARGET_RATIO = 0.95
START_TIMEOUT_S = 60.0
SETTLE_S = 1.0


@dataclass
class Result:
    """The measured rates of one condition."""

    name: str
    rates: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    baseline: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median execs per second over the repeats."""
        return statistics.median(self.rates) if self.rates else 0.0


def exec_burst(count: int) -> float:
    """Exec /bin/true ``count`` times from one shell; return execs per second."""
    script = f'i=0; while [ "$i" -lt {count} ]; do /bin/true; i=$((i+1)); done'
    started = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", script], check=True)
    return count / (time.perf_counter() - started)


class Sink:
    """A Unix listener that reads and discards whatever the agent sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bytes = 0
        self.connected = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        self.connected.set()
        with conn:
            while data := conn.recv(1 << 16):
                self.bytes += len(data)

    def close(self) -> None:
        """Stop listening."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def collector(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """Run ``csm-guest`` against a draining sink; yield a dict filled with its stats."""
    sink = Sink(work / f"sink-{backend}.sock")
    control = work / f"control-{backend}.sock"
    argv = [
        sys.executable,
        "-m",
        "guest_lsm.cli",
        "run",
        "--unix",
        str(sink.path),
        "--backend",
        backend,
        "--enable-all",
        "--control",
        str(control),
        "--build-dir",
        str(work / "build"),
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    stats: dict[str, Any] = {}
    try:
        if not sink.connected.wait(START_TIMEOUT_S):
            raise RuntimeError(f"csm-guest --backend {backend} never connected")
        time.sleep(SETTLE_S)
        yield stats
        answer = subprocess.run(
            [sys.executable, "-m", "guest_lsm.cli", "stats", "--control", str(control)],
            capture_output=True,
            text=True,
            check=True,
        )
        stats.update(json.loads(answer.stdout))
    finally:
        _stop(process)
        sink.close()
        stats["bytes_to_host"] = sink.bytes


@contextlib.contextmanager
def auditd_execve_rule(work: Path) -> Iterator[dict[str, Any]]:
    """Run auditd in the foreground with an execve rule; remove both afterwards."""
    auditd = shutil.which("auditd", path=SYSTEM_PATH)
    auditctl = shutil.which("auditctl", path=SYSTEM_PATH)
    if auditd is None or auditctl is None:
        raise FileNotFoundError("auditd is not installed (apt-get install auditd)")
    daemon = subprocess.Popen([auditd, "-n"], stdout=subprocess.DEVNULL)
    rule = ["-F", "arch=b64", "-S", "execve", "-k", AUDIT_KEY]
    try:
        time.sleep(SETTLE_S)
        subprocess.run([auditctl, "-a", "always,exit", *rule], check=True)
        yield {}
    finally:
        subprocess.run([auditctl, "-d", "always,exit", *rule], check=False)
        _stop(daemon)
        subprocess.run([auditctl, "-e", "0"], check=False, capture_output=True)


@contextlib.contextmanager
def _tracefs() -> Iterator[None]:
    mounted_here = False
    if not (TRACEFS / "events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
        mounted_here = True
    try:
        yield
    finally:
        if mounted_here:
            subprocess.run(["umount", str(TRACEFS)], check=False)


@contextlib.contextmanager
def bpftrace_exec_probe(work: Path) -> Iterator[dict[str, Any]]:
    """Count execs per command with bpftrace on sched_process_exec."""
    bpftrace = shutil.which("bpftrace", path=SYSTEM_PATH)
    if bpftrace is None:
        raise FileNotFoundError("bpftrace is not installed (apt-get install bpftrace)")
    with _tracefs():
        out = work / "bpftrace.out"
        with out.open("wb") as sink:
            probe = subprocess.Popen(
                [
                    bpftrace,
                    "-e",
                    "tracepoint:sched:sched_process_exec { @[comm] = count(); }",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while b"Attaching" not in out.read_bytes():
                if probe.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bpftrace did not attach: {out.read_text()}")
                time.sleep(0.1)
            time.sleep(SETTLE_S)
            yield {}
        finally:
            _stop(probe, signal.SIGINT)


Condition = Callable[[Path], contextlib.AbstractContextManager[dict[str, Any]]]


@contextlib.contextmanager
def nothing(_work: Path) -> Iterator[dict[str, Any]]:
    """No tracer at all."""
    yield {}


def conditions() -> list[tuple[str, Condition]]:
    """Every condition measured, the baseline first."""
    return [
        ("no collector", nothing),
        ("csm-guest tracepoint", lambda work: collector("tracepoint", work)),
        ("csm-guest proc", lambda work: collector("proc", work)),
        ("auditd execve rule", auditd_execve_rule),
        ("bpftrace exec probe", bpftrace_exec_probe),
    ]


def measure(
    name: str, condition: Condition, args: argparse.Namespace, work: Path
) -> Result:
    """Measure one condition between two untraced bursts of the same size.

    The machine's speed drifts (other tenants, caches), so each condition is
    compared with the untraced rate measured right around it.
    """
    result = Result(name)
    before = exec_burst(args.execs)
    try:
        with condition(work) as extra:
            exec_burst(min(200, args.execs))
            result.rates = [exec_burst(args.execs) for _ in range(args.repeats)]
        result.extra = extra
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        result.note = f"not measured: {exc}"
    result.baseline = [before, exec_burst(args.execs)]
    return result


def _summary(results: list[Result]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        baseline = statistics.mean(result.baseline)
        ratio = result.median / baseline if result.rates else None
        row = asdict(result)
        row["median_execs_per_s"] = round(result.median, 1)
        row["ratio"] = round(ratio, 3) if ratio is not None else None
        rows.append(row)
    return rows


def _print_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"exec burst: {args.execs} x /bin/true from one shell worker, "
        f"{args.repeats} repeats, median; kernel {platform.release()}, "
        f"{os.cpu_count()} CPUs"
    )
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        rate = row["median_execs_per_s"]
        around = statistics.mean(row["baseline"])
        line = (
            f"  {row['name']:<22} {rate:>8.1f} execs/s  "
            f"(untraced around it {around:>7.1f})  ratio {ratio}"
        )
        print(line + (f"  ({row['note']})" if row["note"] else ""))
        agent = row["extra"].get("agent")
        if agent:
            kernel = row["extra"].get("kernel", {})
            print(
                f"  {'':<22} drops {agent['drops']}, "
                f"ring full {kernel.get('ring_full', 0)}, "
                f"events {agent['events_encoded']}"
            )
    collector_row = next(r for r in rows if r["name"] == "csm-guest tracepoint")
    if collector_row["ratio"] is not None:
        verdict = "meets" if collector_row["ratio"] >= TARGET_RATIO else "misses"
        print(f"collector {verdict} the target ratio of {TARGET_RATIO}")
    print(
        "rerun: python -m bench.guest_exec_bench "
        f"--execs {args.execs} --repeats {args.repeats}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every condition and print rates and ratios; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("guest_exec_bench: needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="csm-exec-bench-") as tmp:
        work = Path(tmp)
        results = [measure(name, cond, args, work) for name, cond in conditions()]
    rows = _summary(results)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
