"""Build the BPF object against the running kernel's BTF, once per source and kernel."""

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from guest_lsm.errors import BuildError

logger = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent.parent / "bpf"
SOURCES = ("csm_lsm.bpf.c", "csm_lsm.h")
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
DEFAULT_BUILD_DIR = Path("/var/cache/csm-guest")
CLANG = "clang-14"
BPFTOOL = "bpftool"
BUILD_TIMEOUT_S = 300


def _fingerprint(btf: Path) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(btf.read_bytes())
    return digest.hexdigest()[:16]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise BuildError(f"{name} is not installed; run guest_lsm/install-deps.sh")
    return found


def _run(argv: list[str], stdout_path: Path | None = None) -> None:
    logger.debug("running %s", " ".join(argv))
    try:
        if stdout_path is None:
            subprocess.run(
                argv, check=True, capture_output=True, timeout=BUILD_TIMEOUT_S
            )
            return
        with stdout_path.open("wb") as out:
            subprocess.run(
                argv,
                check=True,
                stdout=out,
                stderr=subprocess.PIPE,
                timeout=BUILD_TIMEOUT_S,
            )
    except subprocess.CalledProcessError as exc:
        stderr = (exc.stderr or b"").decode(errors="replace").strip()
        raise BuildError(f"{argv[0]} failed: {stderr[-2000:]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{argv[0]} took more than {BUILD_TIMEOUT_S} s") from exc


def build_object(build_dir: Path = DEFAULT_BUILD_DIR, btf: Path = KERNEL_BTF) -> Path:
    """Return the path of the compiled object, building it if the cache misses."""
    if not btf.exists():
        raise BuildError(f"{btf} is missing: the kernel has no BTF")
    target = build_dir / f"csm_lsm-{_fingerprint(btf)}.bpf.o"
    if target.exists():
        logger.debug("BPF object cached at %s", target)
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    work = build_dir / f"work-{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        _compile(work, btf)
        (work / "csm_lsm.bpf.o").replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("built BPF object %s", target)
    return target


def _compile(work: Path, btf: Path) -> None:
    vmlinux_h = work / "vmlinux.h"
    _run([_tool(BPFTOOL), "btf", "dump", "file", str(btf), "format", "c"], vmlinux_h)
    _run(
        [
            _tool(CLANG),
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            f"-I{work}",
            f"-I{SOURCE_DIR}",
            "-c",
            str(SOURCE_DIR / "csm_lsm.bpf.c"),
            "-o",
            str(work / "csm_lsm.bpf.o"),
        ]
    )
