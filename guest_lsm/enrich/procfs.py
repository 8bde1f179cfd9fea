"""Read what /proc knows about a process, in the shapes the kernel side reports.

Used to enumerate processes that existed before monitoring began and by the
proc-connector backend. Everything here races with the process exiting; a
vanished process gives ``None``.
"""

import ctypes
import ctypes.util
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from guest_lsm.enrich.identity import TICK_NS
from guest_lsm.kernel.records import split_strings
from guest_lsm.raw import FileRef, ProcIds, SocketAddress

logger = logging.getLogger(__name__)

PROC = Path("/proc")
OVERLAYFS_SUPER_MAGIC = 0x794C7630
STATFS_BYTES = 120
_ANON_LINK = re.compile(rb"^(socket|pipe|anon_inode):\[?(\w*)\]?$")


@dataclass(frozen=True, slots=True)
class ProcSnapshot:
    """One live process as /proc shows it."""

    ids: ProcIds
    binary: FileRef | None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def read_stat(pid: int) -> tuple[int, int] | None:
    """Return (ppid, start time in boot ns cut to ticks) of a process."""
    raw = _read(PROC / str(pid) / "stat")
    if raw is None:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # Fields after the command: state is field 3, ppid 4, starttime 22.
    return int(fields[1]), int(fields[19]) * TICK_NS


def _ns_pids(pid: int) -> list[int]:
    raw = _read(PROC / str(pid) / "status")
    if raw is None:
        return []
    for line in raw.splitlines():
        if line.startswith(b"NSpid:"):
            return [int(value) for value in line.split()[1:]]
    return []


def _pidns_inum(pid: int) -> int:
    try:
        return os.stat(PROC / str(pid) / "ns" / "pid").st_ino
    except OSError:
        return 0


def read_ids(pid: int) -> ProcIds | None:
    """Return the identity of a process and its parent, or None if it is gone."""
    own = read_stat(pid)
    if own is None:
        return None
    ppid, start_ns = own
    parent = read_stat(ppid) if ppid else None
    ns_pids = _ns_pids(pid) or [pid]
    level = len(ns_pids) - 1
    inum = _pidns_inum(pid)
    ns_ppid = 0
    if ppid and _pidns_inum(ppid) == inum:
        parent_ns = _ns_pids(ppid)
        ns_ppid = parent_ns[-1] if len(parent_ns) == len(ns_pids) else 0
    return ProcIds(
        tgid=pid,
        ppid=ppid,
        start_ns=start_ns,
        parent_start_ns=parent[1] if parent else 0,
        pidns_inum=inum,
        pidns_level=level,
        ns_pid=ns_pids[-1],
        ns_ppid=ns_ppid,
    )


def read_strings(pid: int, name: str) -> list[bytes] | None:
    """Return argv (``cmdline``) or envp (``environ``) of a process."""
    raw = _read(PROC / str(pid) / name)
    return None if raw is None else split_strings(raw)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * STATFS_BYTES)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.POINTER(_StatFs)]


def filesystem_magic(path: Path) -> int:
    """Return statfs's f_type of the filesystem holding ``path`` (0 on error)."""
    buffer = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buffer)) != 0:
        return 0
    return int(buffer.f_type) & 0xFFFFFFFF


def _overlay_options(pid: int, path: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """Find the overlay mount holding ``path``: (mount point, lowerdirs, upperdir)."""
    raw = _read(PROC / str(pid) / "mountinfo")
    if raw is None:
        return None
    best: tuple[bytes, list[bytes], bytes] | None = None
    for line in raw.splitlines():
        head, _, tail = line.partition(b" - ")
        fields = head.split()
        tail_fields = tail.split()
        if len(fields) < 5 or len(tail_fields) < 3 or tail_fields[0] != b"overlay":
            continue
        point = fields[4]
        inside = path == point or path.startswith(point.rstrip(b"/") + b"/")
        if not inside or (best is not None and len(best[0]) > len(point)):
            continue
        options: dict[bytes, bytes] = {}
        for item in tail_fields[2].split(b","):
            key, _, value = item.partition(b"=")
            options[key] = value
        lower = [part for part in options.get(b"lowerdir", b"").split(b":") if part]
        best = (point, lower, options.get(b"upperdir", b""))
    return best


def overlay_layers(pid: int, path: bytes) -> tuple[bool, bool]:
    """Return (lower, upper) for a file on an overlay, as seen by ``pid``."""
    found = _overlay_options(pid, path)
    if found is None:
        return False, False
    point, lowers, upper = found
    relative = path[len(point.rstrip(b"/")) :].lstrip(b"/")
    in_upper = bool(upper) and os.path.lexists(os.path.join(upper, relative))
    in_lower = any(os.path.lexists(os.path.join(low, relative)) for low in lowers)
    return in_lower, in_upper


def _root_relative(pid: int, target: bytes) -> bytes:
    """Express a link target as the process sees it (inside its chroot)."""
    try:
        root = os.fsencode(os.readlink(PROC / str(pid) / "root"))
    except OSError:
        return target
    if root != b"/" and target.startswith(root + b"/"):
        return target[len(root) :]
    return target


def read_binary(pid: int) -> FileRef | None:
    """Return the executable of a process with its inode and overlay layer."""
    exe = PROC / str(pid) / "exe"
    try:
        target = os.fsencode(os.readlink(exe))
        info = os.stat(exe)
    except OSError:
        return None
    overlay = filesystem_magic(exe) == OVERLAYFS_SUPER_MAGIC
    lower = upper = False
    if overlay:
        lower, upper = overlay_layers(1, target)
    return FileRef(
        path=_root_relative(pid, target),
        ino=info.st_ino,
        dev=info.st_dev,
        mode=info.st_mode,
        overlay=overlay,
        upper=upper,
        lower=lower,
    )


def _parse_hex_address(family: int, text: str) -> SocketAddress:
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    # /proc/net prints each 32-bit word in host (little-endian) order.
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    return SocketAddress(family=family, ip=b"".join(words), port=int(port, 16))


def socket_addresses(
    pid: int, inode: int
) -> tuple[int, SocketAddress | None, SocketAddress | None]:
    """Find an IP socket by inode in the process's network namespace."""
    tables = (
        ("tcp", socket.AF_INET),
        ("tcp6", socket.AF_INET6),
        ("udp", socket.AF_INET),
        ("udp6", socket.AF_INET6),
    )
    for name, family in tables:
        raw = _read(PROC / str(pid) / "net" / name)
        if raw is None:
            continue
        for line in raw.decode(errors="replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] == str(inode):
                local = _parse_hex_address(family, fields[1])
                remote = _parse_hex_address(family, fields[2])
                return family, local, remote if remote.port else None
    return 0, None, None


def read_fd(pid: int, fd: int) -> FileRef | None:
    """Return fd 0, 1 or 2 of a process: mode, inode, path and socket ends."""
    link = PROC / str(pid) / "fd" / str(fd)
    try:
        target = os.fsencode(os.readlink(link))
        info = os.stat(link)
    except OSError:
        return None
    family, local, remote = 0, None, None
    if stat.S_ISSOCK(info.st_mode):
        family, local, remote = socket_addresses(pid, info.st_ino)
    return FileRef(
        path=target if _ANON_LINK.match(target) else _root_relative(pid, target),
        ino=info.st_ino,
        dev=info.st_dev,
        mode=info.st_mode,
        socket_family=family or (socket.AF_UNIX if stat.S_ISSOCK(info.st_mode) else 0),
        local=local,
        remote=remote,
    )


def list_pids() -> list[int]:
    """Every thread-group id in /proc."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def snapshot_all() -> list[ProcSnapshot]:
    """Every live process, parents before children (by start time)."""
    found = []
    for pid in list_pids():
        ids = read_ids(pid)
        if ids is not None:
            found.append(ProcSnapshot(ids=ids, binary=read_binary(pid)))
    found.sort(key=lambda snap: (snap.ids.start_ns, snap.ids.tgid))
    return found


def kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel."""
    release = os.uname().release
    numbers = [int(part) for part in re.findall(r"\d+", release)[:3]]
    numbers += [0] * (3 - len(numbers))
    major, minor, patch = numbers
    return (major << 16) + (minor << 8) + min(patch, 255)
