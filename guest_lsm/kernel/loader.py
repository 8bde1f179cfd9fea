"""Load csm_lsm.bpf.o: LSM hooks where allowed, else their tracepoint twins."""

import ctypes
import errno
import logging
from collections.abc import Callable
from types import TracebackType

from guest_lsm.errors import BackendUnavailable, BpfLoadError
from guest_lsm.kernel import records
from guest_lsm.kernel.backend import Backend
from guest_lsm.kernel.libbpf import LibBpf
from guest_lsm.raw import RawEvent, SourceCounters

logger = logging.getLogger(__name__)

LSM_PREFIX = "lsm_"
TRACEPOINT_PREFIX = "tp_"
SHARED_PREFIX = "shared_"
RING_MAP = b"events"
COUNTER_MAP = b"counters"

EventHandler = Callable[[RawEvent], None]


class BpfSource:
    """The BPF event source: owns the object, its links and the ring buffer."""

    def __init__(
        self, object_path: str, backend: Backend, on_event: EventHandler
    ) -> None:
        if backend not in (Backend.AUTO, Backend.LSM, Backend.TRACEPOINT):
            raise ValueError(f"{backend} is not a BPF backend")
        self._path = object_path
        self._wanted = backend
        self._on_event = on_event
        self._lib = LibBpf()
        self._obj = 0
        self._links: list[int] = []
        self._ring = 0
        self._callback = self._lib.sample_callback(self._on_sample)
        self.backend: Backend | None = None
        self.undecodable = 0
        self.handler_errors = 0

    def __enter__(self) -> "BpfSource":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Backend:
        """Load and attach one program set, LSM first unless told otherwise."""
        try:
            if self._wanted in (Backend.AUTO, Backend.LSM):
                try:
                    self._lib.quiet = self._wanted is Backend.AUTO
                    self._load(Backend.LSM)
                except BpfLoadError as exc:
                    self.close()
                    if self._wanted is Backend.LSM:
                        raise
                    self._log_lsm_refused(exc)
                    self._load(Backend.TRACEPOINT)
            else:
                self._load(Backend.TRACEPOINT)
            self._open_ring()
        except BaseException:
            self.close()
            raise
        finally:
            self._lib.quiet = False
        assert self.backend is not None
        return self.backend

    def _log_lsm_refused(self, exc: BpfLoadError) -> None:
        if exc.errno == errno.EPERM:
            logger.info(
                "the kernel refuses BPF LSM programs (EPERM: no trampolines); "
                "using the BTF tracepoint twins"
            )
        else:
            logger.warning("BPF LSM programs failed (%s); using tracepoint twins", exc)

    def _load(self, backend: Backend) -> None:
        self._obj = self._lib.pointer(
            "bpf_object__open_file", self._path.encode(), None
        )
        keep = LSM_PREFIX if backend is Backend.LSM else TRACEPOINT_PREFIX
        programs = self._programs()
        for name, prog in programs:
            wanted = name.startswith((keep, SHARED_PREFIX))
            self._lib.status("bpf_program__set_autoload", prog, wanted)
        self._lib.status("bpf_object__load", self._obj)
        for name, prog in programs:
            if name.startswith((keep, SHARED_PREFIX)):
                self._links.append(self._lib.pointer("bpf_program__attach", prog))
                logger.debug("attached %s", name)
        self.backend = backend
        logger.info(
            "BPF collector running with the %s backend (%d programs)",
            backend.value,
            len(self._links),
        )

    def _programs(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        prog = self._lib.call("bpf_object__next_program", self._obj, None)
        while prog:
            name = self._lib.call("bpf_program__name", prog).decode()
            found.append((name, prog))
            prog = self._lib.call("bpf_object__next_program", self._obj, prog)
        return found

    def _open_ring(self) -> None:
        fd = self._lib.status("bpf_object__find_map_fd_by_name", self._obj, RING_MAP)
        self._ring = self._lib.pointer(
            "ring_buffer__new", fd, self._callback, None, None
        )

    def _on_sample(self, address: int, size: int) -> int:
        # An exception must not cross into libbpf: count it and go on.
        try:
            event = records.decode_record(address, size)
            if event is None:
                self.undecodable += 1
                return 0
            self._on_event(event)
        except Exception:
            self.handler_errors += 1
            logger.exception("handling a kernel record failed")
        return 0

    def poll(self) -> int:
        """Hand every record waiting in the ring to the handler; return how many."""
        if not self._ring:
            raise BackendUnavailable("the BPF source is not started")
        return int(self._lib.status("ring_buffer__consume", self._ring))

    def counters(self) -> SourceCounters:
        """Read the kernel-side counters, summed over CPUs."""
        totals = SourceCounters(undecodable=self.undecodable)
        if not self._obj:
            return totals
        fd = self._lib.call("bpf_object__find_map_fd_by_name", self._obj, COUNTER_MAP)
        if fd < 0:
            return totals
        cpus = int(self._lib.call("libbpf_num_possible_cpus"))
        values = (ctypes.c_uint64 * cpus)()
        sums = []
        for slot in range(records.CNT_SLOTS):
            key = ctypes.c_uint32(slot)
            self._lib.call("bpf_map_lookup_elem", fd, ctypes.byref(key), values)
            sums.append(sum(values))
        totals.ring_full = sums[records.CNT_RING_FULL]
        totals.argv_faults = sums[records.CNT_ARGV_FAULT]
        totals.envp_faults = sums[records.CNT_ENVP_FAULT]
        totals.writers_recorded = sums[records.CNT_WRITERS]
        totals.extra["handler_errors"] = self.handler_errors
        return totals

    def close(self) -> None:
        """Detach every program and free the object; safe to call twice."""
        if self._ring:
            self._lib.call("ring_buffer__free", self._ring)
            self._ring = 0
        while self._links:
            self._lib.call("bpf_link__destroy", self._links.pop())
        if self._obj:
            self._lib.call("bpf_object__close", self._obj)
            self._obj = 0
