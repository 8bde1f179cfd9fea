"""Errors of the fleet layer.

FleetError
├── HostUnavailable  the receiver holding a VM is not running (lease expired)
└── RelayTimeout     that receiver did not answer a relayed request in time
"""

from receiver.errors import ReceiverError


class FleetError(ReceiverError):
    """Base of the expected errors between receivers sharing a database."""


class HostUnavailable(FleetError):
    """No live receiver holds the VM's host."""


class RelayTimeout(FleetError):
    """The owning receiver did not claim or answer a request in time."""
