"""Errors of the stream export.

ExportError
└── SinkUnavailable  the stream engine cannot be reached or refused a message
"""

from receiver.errors import ReceiverError


class ExportError(ReceiverError):
    """Base of the exporter's expected errors."""


class SinkUnavailable(ExportError):
    """Publishing failed; the exporter retries from its saved cursor."""
