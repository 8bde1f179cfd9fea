"""What every benchmark prints beside its figures: the machine and the
command that reruns it."""

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_mib() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def describe_machine() -> dict[str, Any]:
    """The host the benchmark ran on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mib": _memory_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # Other work on the host competes for the same cores.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def rerun_command(argv: Sequence[str]) -> str:
    """The shell command that repeats this run."""
    return shlex.join(["csm-bench", *argv])


def rss_mib() -> float:
    """This process's resident memory now."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last reset."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def print_header(title: str, argv: Sequence[str], out: Any = sys.stdout) -> None:
    """The lines that open a human-readable report."""
    machine = describe_machine()
    print(f"== {title}", file=out)
    print(
        "machine: {cpu}, {cores} cores, {memory_mib} MiB, Linux {kernel}, "
        "Python {python}, load {load_average_1m}".format(**machine),
        file=out,
    )
    print(f"rerun:   {rerun_command(argv)}", file=out)
