"""The event sources the agent can run on."""

import enum


class Backend(enum.Enum):
    """An event source; AUTO tries LSM, then tracepoints, then the proc connector."""

    AUTO = "auto"
    LSM = "lsm"
    TRACEPOINT = "tracepoint"
    PROC = "proc"
