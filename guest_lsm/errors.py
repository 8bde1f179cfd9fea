"""Errors of the guest collector.

GuestError
├── BuildError          the BPF object cannot be built (tools, headers)
├── BackendUnavailable  an event source cannot run on this kernel
│   └── BpfLoadError    libbpf refused to open, load or attach the object
├── ConfigError         a setting or a configuration document is invalid
└── ControlError        the local control socket refused or failed a request
"""


class GuestError(Exception):
    """Base of every error the guest collector raises on purpose."""


class BuildError(GuestError):
    """The BPF object could not be compiled."""


class BackendUnavailable(GuestError):
    """An event source cannot run here; the agent may try the next one."""


class BpfLoadError(BackendUnavailable):
    """libbpf refused the object; ``errno`` says why (EPERM: LSM forbidden)."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


class ConfigError(GuestError):
    """A setting or configuration document that cannot be used."""


class ControlError(GuestError):
    """A request over the local control socket failed."""
