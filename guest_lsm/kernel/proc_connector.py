"""The fallback event source: the netlink proc connector, read from pure Python.

The kernel only says that a fork, exec or exit happened; everything else is
read from /proc afterwards, so a process that is already gone loses its
argv, environment and fds. It also cannot see executable mappings or
writes, so there are no memexec events and no first writers.
"""

import logging
import socket
import struct
import time
from collections.abc import Callable

from guest_lsm.enrich import procfs
from guest_lsm.errors import BackendUnavailable
from guest_lsm.raw import RawEvent, RawExec, RawExit, RawFork, SourceCounters

logger = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
# Linux socket option; the socket module does not export it.
SO_RCVBUFFORCE = 33
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
RECEIVE_BUFFER_BYTES = 8 << 20
READ_BYTES = 65536
MAX_MESSAGES_PER_POLL = 4096

NLMSGHDR = struct.Struct("=IHHII")
CN_MSG = struct.Struct("=IIIIHH")
PROC_EVENT = struct.Struct("=IIQ")
FORK_DATA = struct.Struct("=IIII")
EXEC_DATA = struct.Struct("=II")
EXIT_DATA = struct.Struct("=IIII")

LIMITS = (
    "proc connector backend: argv, environment and fds are read from /proc "
    "after the event, so short-lived processes lose them; no memexec events, "
    "no first writers of overlay files, overlay layers guessed from mountinfo"
)


class ProcConnectorSource:
    """Fork, exec and exit notifications from the kernel, enriched from /proc."""

    def __init__(self, on_event: Callable[[RawEvent], None]) -> None:
        self._on_event = on_event
        self._sock: socket.socket | None = None
        self._counters = SourceCounters()
        # The connector stamps events with CLOCK_MONOTONIC.
        self._mono_to_boot = time.clock_gettime_ns(
            time.CLOCK_BOOTTIME
        ) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def fileno(self) -> int:
        """The netlink socket, for an event loop's reader."""
        if self._sock is None:
            raise BackendUnavailable("the proc connector is not started")
        return self._sock.fileno()

    def start(self) -> None:
        """Subscribe to process events."""
        try:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR
            )
        except OSError as exc:
            raise BackendUnavailable(f"no netlink proc connector: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            sock.bind((0, CN_IDX_PROC))
            body = struct.pack("=I", PROC_CN_MCAST_LISTEN)
            cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(body), 0) + body
            header = NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0)
            sock.send(header + cn)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise BackendUnavailable(
                f"proc connector subscription failed: {exc}"
            ) from exc
        self._sock = sock
        logger.warning("%s", LIMITS)

    def poll(self) -> int:
        """Handle every waiting notification; return how many."""
        if self._sock is None:
            raise BackendUnavailable("the proc connector is not started")
        handled = 0
        while handled < MAX_MESSAGES_PER_POLL:
            try:
                data = self._sock.recv(READ_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped notifications we were too slow for.
                self._counters.ring_full += 1
                logger.debug("proc connector: %s", exc)
                continue
            handled += self._dispatch(data)
        return handled

    def _dispatch(self, data: bytes) -> int:
        offset = NLMSGHDR.size + CN_MSG.size
        if len(data) < offset + PROC_EVENT.size:
            self._counters.undecodable += 1
            return 0
        what, _cpu, stamp = PROC_EVENT.unpack_from(data, offset)
        body = offset + PROC_EVENT.size
        boot_ns = stamp + self._mono_to_boot
        event: RawEvent | None = None
        if what == PROC_EVENT_FORK:
            event = self._fork(data, body, boot_ns)
        elif what == PROC_EVENT_EXEC:
            event = self._exec(data, body, boot_ns)
        elif what == PROC_EVENT_EXIT:
            event = self._exit(data, body, boot_ns)
        if event is None:
            return 0
        self._on_event(event)
        return 1

    def _vanished(self) -> None:
        self._counters.extra["vanished"] = self._counters.extra.get("vanished", 0) + 1

    def _fork(self, data: bytes, at: int, boot_ns: int) -> RawFork | None:
        _ppid, _ptgid, child_pid, child_tgid = FORK_DATA.unpack_from(data, at)
        if child_pid != child_tgid:
            return None
        ids = procfs.read_ids(child_tgid)
        if ids is None:
            self._vanished()
            return None
        return RawFork(boot_ns=boot_ns, ids=ids)

    def _exec(self, data: bytes, at: int, boot_ns: int) -> RawExec | None:
        _pid, tgid = EXEC_DATA.unpack_from(data, at)
        ids = procfs.read_ids(tgid)
        binary = procfs.read_binary(tgid)
        if ids is None or binary is None:
            self._vanished()
            return None
        fds = (
            procfs.read_fd(tgid, 0),
            procfs.read_fd(tgid, 1),
            procfs.read_fd(tgid, 2),
        )
        return RawExec(
            boot_ns=boot_ns,
            ids=ids,
            binary=binary,
            argv=procfs.read_strings(tgid, "cmdline") or [],
            envp=procfs.read_strings(tgid, "environ") or [],
            fds=fds,
        )

    def _exit(self, data: bytes, at: int, boot_ns: int) -> RawExit | None:
        pid, tgid, exit_code, _signal = EXIT_DATA.unpack_from(data, at)
        if pid != tgid:
            return None
        return RawExit(boot_ns=boot_ns, tgid=tgid, start_ns=0, exit_code=exit_code)

    def counters(self) -> SourceCounters:
        """Losses seen so far."""
        return self._counters

    def close(self) -> None:
        """Unsubscribe by closing the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
