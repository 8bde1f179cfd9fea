"""Decode the ring buffer records of csm_lsm.bpf.c into backend-neutral events.

The structures mirror guest_lsm/bpf/csm_lsm.h field for field.
"""

import ctypes
import logging
import socket
from collections.abc import Callable

from guest_lsm.raw import (
    FileRef,
    MemexecAction,
    ProcIds,
    RawEvent,
    RawExec,
    RawExit,
    RawFork,
    RawMemexec,
    RawWrite,
    SocketAddress,
    Writer,
)

logger = logging.getLogger(__name__)

REC_EXEC = 1
REC_FORK = 2
REC_EXIT = 3
REC_MEMEXEC = 4
REC_WRITE = 5

PATH_BYTES = 512
NAME_BYTES = 128
ARGV_BYTES = 4096
ENVP_BYTES = 8192

FILE_OVERLAY = 1
FILE_UPPER = 2
FILE_LOWER = 4
FILE_SOCKET = 8
FILE_WRITER = 16
FILE_PRESENT = 32
FILE_REMOTE = 64

CNT_RING_FULL = 0
CNT_ARGV_FAULT = 1
CNT_ENVP_FAULT = 2
CNT_WRITERS = 3
CNT_SLOTS = 8

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class RecHdr(ctypes.Structure):
    """struct rec_hdr."""

    _fields_ = [("type", _u32), ("size", _u32), ("boot_ns", _u64)]


class CProcIds(ctypes.Structure):
    """struct proc_ids."""

    _fields_ = [
        ("tgid", _u32),
        ("ppid", _u32),
        ("start_ns", _u64),
        ("parent_start_ns", _u64),
        ("pidns_inum", _u32),
        ("pidns_level", _u32),
        ("ns_pid", _u32),
        ("ns_ppid", _u32),
    ]


class CFileInfo(ctypes.Structure):
    """struct file_info."""

    _fields_ = [
        ("ino", _u64),
        ("dev", _u32),
        ("mode", _u32),
        ("flags", _u32),
        ("path_len", _u32),
        ("writer_tgid", _u32),
        ("family", _u32),
        ("writer_start_ns", _u64),
        ("lport", _u16),
        ("rport", _u16),
        ("laddr", _u8 * 16),
        ("raddr", _u8 * 16),
        ("pad", _u32),
        ("path", ctypes.c_char * (PATH_BYTES + NAME_BYTES)),
    ]


class CExecRec(ctypes.Structure):
    """struct exec_rec."""

    _fields_ = [
        ("hdr", RecHdr),
        ("ids", CProcIds),
        ("argv_len", _u32),
        ("argv_total", _u32),
        ("envp_len", _u32),
        ("envp_total", _u32),
        ("binary", CFileInfo),
        ("fds", CFileInfo * 3),
        ("data", ctypes.c_char * (ARGV_BYTES + ENVP_BYTES)),
    ]


class CForkRec(ctypes.Structure):
    """struct fork_rec."""

    _fields_ = [("hdr", RecHdr), ("ids", CProcIds)]


class CExitRec(ctypes.Structure):
    """struct exit_rec."""

    _fields_ = [
        ("hdr", RecHdr),
        ("tgid", _u32),
        ("exit_code", _u32),
        ("start_ns", _u64),
    ]


class CMemexecRec(ctypes.Structure):
    """struct memexec_rec."""

    _fields_ = [
        ("hdr", RecHdr),
        ("ids", CProcIds),
        ("action", _u32),
        ("pad", _u32),
        ("prot", _u64),
        ("reqprot", _u64),
        ("old_vm_flags", _u64),
        ("mmap_flags", _u64),
        ("start", _u64),
        ("end", _u64),
        ("file", CFileInfo),
    ]


class CWriteRec(ctypes.Structure):
    """struct write_rec."""

    _fields_ = [("hdr", RecHdr), ("ids", CProcIds), ("file", CFileInfo)]


def _ids(c: CProcIds) -> ProcIds:
    return ProcIds(
        tgid=c.tgid,
        ppid=c.ppid,
        start_ns=c.start_ns,
        parent_start_ns=c.parent_start_ns,
        pidns_inum=c.pidns_inum,
        pidns_level=c.pidns_level,
        ns_pid=c.ns_pid,
        ns_ppid=c.ns_ppid,
    )


def join_path(raw: bytes) -> bytes:
    """Turn leaf-first NUL-terminated components into an absolute path."""
    parts = [part for part in raw.split(b"\0") if part]
    return b"/" + b"/".join(reversed(parts))


def _address(family: int, raw: bytes, port: int) -> SocketAddress:
    size = 4 if family == socket.AF_INET else 16
    return SocketAddress(family=family, ip=bytes(raw[:size]), port=port)


def _file(c: CFileInfo) -> FileRef | None:
    flags = c.flags
    if not flags & FILE_PRESENT:
        return None
    path_len = min(c.path_len, PATH_BYTES + NAME_BYTES)
    raw_path = ctypes.string_at(ctypes.addressof(c) + CFileInfo.path.offset, path_len)
    writer = None
    if flags & FILE_WRITER:
        writer = Writer(tgid=c.writer_tgid, start_ns=c.writer_start_ns)
    local = remote = None
    if flags & FILE_SOCKET and c.family in (socket.AF_INET, socket.AF_INET6):
        local = _address(c.family, bytes(c.laddr), c.lport)
        if flags & FILE_REMOTE:
            remote = _address(c.family, bytes(c.raddr), c.rport)
    return FileRef(
        path=join_path(raw_path),
        ino=c.ino,
        dev=c.dev,
        mode=c.mode,
        overlay=bool(flags & FILE_OVERLAY),
        upper=bool(flags & FILE_UPPER),
        lower=bool(flags & FILE_LOWER),
        writer=writer,
        socket_family=c.family if flags & FILE_SOCKET else 0,
        local=local,
        remote=remote,
    )


def split_strings(block: bytes) -> list[bytes]:
    """Split a NUL-separated argv or envp block; a cut last string is kept."""
    if not block:
        return []
    if block.endswith(b"\0"):
        block = block[:-1]
    return block.split(b"\0")


def _exec(address: int, size: int) -> RawExec | None:
    # Only the fixed part and the bytes actually read are in the ring.
    rec = CExecRec.from_address(address)
    argv_len = min(rec.argv_len, ARGV_BYTES)
    envp_len = min(rec.envp_len, ENVP_BYTES)
    data = address + CExecRec.data.offset
    if CExecRec.data.offset + argv_len + envp_len > size:
        return None
    argv = ctypes.string_at(data, argv_len)
    envp = ctypes.string_at(data + argv_len, envp_len)
    binary = _file(rec.binary) or FileRef(path=b"")
    fds = (_file(rec.fds[0]), _file(rec.fds[1]), _file(rec.fds[2]))
    return RawExec(
        boot_ns=rec.hdr.boot_ns,
        ids=_ids(rec.ids),
        binary=binary,
        argv=split_strings(argv),
        envp=split_strings(envp),
        fds=fds,
        argv_missing_bytes=max(0, rec.argv_total - argv_len),
        envp_missing_bytes=max(0, rec.envp_total - envp_len),
    )


def _memexec(address: int) -> RawMemexec | None:
    rec = CMemexecRec.from_address(address)
    mapped = _file(rec.file)
    if mapped is None:
        return None
    return RawMemexec(
        boot_ns=rec.hdr.boot_ns,
        ids=_ids(rec.ids),
        action=MemexecAction(rec.action),
        file=mapped,
        prot=rec.prot,
        reqprot=rec.reqprot,
        old_vm_flags=rec.old_vm_flags,
        mmap_flags=rec.mmap_flags,
        start=rec.start,
        end=rec.end,
    )


def _write(address: int) -> RawWrite | None:
    rec = CWriteRec.from_address(address)
    written = _file(rec.file)
    if written is None:
        return None
    return RawWrite(boot_ns=rec.hdr.boot_ns, ids=_ids(rec.ids), file=written)


def _fork(address: int) -> RawFork:
    rec = CForkRec.from_address(address)
    return RawFork(boot_ns=rec.hdr.boot_ns, ids=_ids(rec.ids))


def _exit(address: int) -> RawExit:
    rec = CExitRec.from_address(address)
    return RawExit(
        boot_ns=rec.hdr.boot_ns,
        tgid=rec.tgid,
        start_ns=rec.start_ns,
        exit_code=rec.exit_code,
    )


Decoder = Callable[[int, int], RawEvent | None]
# Type: (smallest valid size, decoder of (address, size)).
_DECODERS: dict[int, tuple[int, Decoder]] = {
    REC_EXEC: (CExecRec.data.offset, _exec),
    REC_FORK: (ctypes.sizeof(CForkRec), lambda address, _size: _fork(address)),
    REC_EXIT: (ctypes.sizeof(CExitRec), lambda address, _size: _exit(address)),
    REC_MEMEXEC: (ctypes.sizeof(CMemexecRec), lambda address, _size: _memexec(address)),
    REC_WRITE: (ctypes.sizeof(CWriteRec), lambda address, _size: _write(address)),
}


def decode_record(address: int, size: int) -> RawEvent | None:
    """Decode one ring buffer sample; None if its type or size is not known."""
    if size < ctypes.sizeof(RecHdr):
        return None
    hdr = RecHdr.from_address(address)
    entry = _DECODERS.get(hdr.type)
    if entry is None:
        return None
    smallest, decode = entry
    if size < smallest:
        return None
    return decode(address, size)
