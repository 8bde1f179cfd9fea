"""Process UUIDs and clocks: machine id, leader start time, tgid."""

import hashlib
import os
import struct
import time
from pathlib import Path

UUID_LAYOUT = struct.Struct("<IQI")
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
PROC_STAT_PATH = Path("/proc/stat")
NS_PER_S = 1_000_000_000
# /proc reports start times in clock ticks; kernel events carry nanoseconds.
# Both are cut to whole ticks so either source mints the same UUID.
TICK_NS = NS_PER_S // os.sysconf("SC_CLK_TCK")


def machine_id_from_boot_id(boot_id: str) -> int:
    """Derive this boot's machine id (never 0) from the kernel's random boot id."""
    digest = hashlib.sha256(boot_id.strip().encode()).digest()
    value = int.from_bytes(digest[:4], "little")
    return value or 1


def read_boot_time_ns(stat_path: Path = PROC_STAT_PATH) -> int:
    """Return the kernel's boot time (``btime``) as wall-clock ns."""
    for line in stat_path.read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) * NS_PER_S
    raise ValueError(f"{stat_path} has no btime line")


class Identity:
    """Mints process UUIDs and converts kernel boot-clock times to wall clock."""

    def __init__(self, machine_id: int, boot_time_ns: int, boot_offset_ns: int) -> None:
        if not 0 < machine_id < 1 << 32:
            raise ValueError("machine id must be a non-zero u32")
        self.machine_id = machine_id
        self._boot_time_ns = boot_time_ns
        self._boot_offset_ns = boot_offset_ns

    @classmethod
    def from_system(cls) -> "Identity":
        """Build the identity of the running boot."""
        offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        return cls(
            machine_id_from_boot_id(BOOT_ID_PATH.read_text()),
            read_boot_time_ns(),
            offset,
        )

    def start_wall_ns(self, start_boot_ns: int) -> int:
        """Wall-clock start of a process, in whole clock ticks after boot."""
        return self._boot_time_ns + start_boot_ns // TICK_NS * TICK_NS

    def wall_ns(self, boot_ns: int) -> int:
        """Convert a CLOCK_BOOTTIME instant to wall-clock ns."""
        return boot_ns + self._boot_offset_ns

    def now_boot_ns(self) -> int:
        """The current CLOCK_BOOTTIME in ns."""
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def uuid(self, tgid: int, start_boot_ns: int) -> bytes:
        """The 16-byte UUID of a process: machine id, leader start, tgid."""
        return UUID_LAYOUT.pack(
            self.machine_id, self.start_wall_ns(start_boot_ns), tgid
        )
