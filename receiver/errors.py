"""Errors of the receiver service.

ReceiverError
├── ConfigError      bad flags, environment or config file; exit with a message
├── StoreUnavailable the database cannot be reached or migrated
└── VmError          a VM registration that cannot be honoured
"""


class ReceiverError(Exception):
    """Base of the receiver's expected errors (not bugs)."""


class ConfigError(ReceiverError):
    """A setting is missing, malformed or contradictory."""


class StoreUnavailable(ReceiverError):
    """The database cannot be reached or brought to the latest revision."""


class VmError(ReceiverError):
    """A VM cannot be registered or its listener cannot be opened."""
