"""The few libbpf.so.1 functions the loader needs, bound with ctypes."""

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from typing import Any

from guest_lsm.errors import BackendUnavailable, BpfLoadError

logger = logging.getLogger(__name__)

LIBBPF_NAME = "libbpf.so.1"
# A verifier log arrives as one message and can be long.
LOG_BUFFER_BYTES = 1 << 20
# libbpf_print_level: WARN 0, INFO 1, DEBUG 2.
_PY_LEVEL = {0: logging.WARNING, 1: logging.DEBUG, 2: logging.DEBUG}

PRINT_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
)
SAMPLE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
# BPF_PROG_TYPE_LSM in enum bpf_prog_type.
BPF_PROG_TYPE_LSM = 29

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (ctypes.c_void_p, [PRINT_FN]),
    "bpf_object__open_file": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
    "bpf_object__load": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_object__close": (None, [ctypes.c_void_p]),
    "bpf_object__next_program": (
        ctypes.c_void_p,
        [ctypes.c_void_p, ctypes.c_void_p],
    ),
    "bpf_object__find_map_fd_by_name": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_char_p],
    ),
    "bpf_program__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__section_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__set_autoload": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_bool]),
    "bpf_program__attach": (ctypes.c_void_p, [ctypes.c_void_p]),
    "bpf_link__destroy": (ctypes.c_int, [ctypes.c_void_p]),
    "ring_buffer__new": (
        ctypes.c_void_p,
        [ctypes.c_int, SAMPLE_FN, ctypes.c_void_p, ctypes.c_void_p],
    ),
    "ring_buffer__consume": (ctypes.c_int, [ctypes.c_void_p]),
    "ring_buffer__free": (None, [ctypes.c_void_p]),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    "bpf_map_lookup_elem": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
    ),
}


class LibBpf:
    """A handle on libbpf with typed functions and libbpf's log routed to logging."""

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL(LIBBPF_NAME, use_errno=True)
        except OSError as exc:
            raise BackendUnavailable(f"{LIBBPF_NAME} cannot be loaded: {exc}") from exc
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name)
        self._libc.vsnprintf.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_void_p,
        ]
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(self._lib, name)
            function.restype = restype
            function.argtypes = argtypes
        self._log_buffer = ctypes.create_string_buffer(LOG_BUFFER_BYTES)
        # While probing for LSM support libbpf's warnings are expected noise
        # (its advice to raise RLIMIT_MEMLOCK is wrong there: EPERM means
        # the kernel forbids the trampolines).
        self.quiet = False
        # Keep the callback alive for as long as libbpf may call it.
        self._print = PRINT_FN(self._log)
        self._lib.libbpf_set_print(self._print)

    def _log(self, level: int, fmt: bytes, args: int) -> int:
        self._libc.vsnprintf(self._log_buffer, LOG_BUFFER_BYTES, fmt, args)
        text = self._log_buffer.value.decode(errors="replace").rstrip()
        if text:
            py_level = _PY_LEVEL.get(level, logging.DEBUG)
            logger.log(logging.DEBUG if self.quiet else py_level, "libbpf: %s", text)
        return 0

    def call(self, name: str, *args: Any) -> Any:
        """Call one libbpf function by name."""
        return getattr(self._lib, name)(*args)

    def pointer(self, name: str, *args: Any) -> int:
        """Call a function returning a pointer; raise with errno if it is NULL."""
        ctypes.set_errno(0)
        result = getattr(self._lib, name)(*args)
        if not result:
            err = ctypes.get_errno()
            raise BpfLoadError(f"{name} failed: {os.strerror(err)}", err)
        return int(result)

    def status(self, name: str, *args: Any) -> int:
        """Call a function returning a negative errno on failure; raise then."""
        result = int(getattr(self._lib, name)(*args))
        if result < 0:
            raise BpfLoadError(f"{name} failed: {os.strerror(-result)}", -result)
        return result

    def sample_callback(self, handler: Callable[[int, int], int]) -> Any:
        """Wrap a ``handler(data_address, size)`` as a ring buffer callback."""

        def on_sample(_ctx: int | None, data: int | None, size: int) -> int:
            return handler(data or 0, size)

        return SAMPLE_FN(on_sample)
