"""Errors raised while framing and decoding CSM traffic.

WireError
├── FramingError          the byte stream cannot be framed; end the connection
│   ├── FrameTooShort     length field below the 8-byte header
│   └── FrameTooLong      length field above the configured limit
└── PayloadError          one frame is bad; skip it, keep the connection
    ├── UnknownFrameType  a type this side does not handle
    └── UndecodableFrame  the payload is not the message its type names
"""


class WireError(Exception):
    """Base of every error about bytes on the wire."""


class FramingError(WireError):
    """The stream's framing is broken: nothing after this point can be trusted."""


class FrameTooShort(FramingError):
    """A length field below the size of the header itself."""


class FrameTooLong(FramingError):
    """A length field above the configured frame limit."""


class PayloadError(WireError):
    """A well-framed frame whose content cannot be used."""


class UnknownFrameType(PayloadError):
    """A frame type this side does not understand."""


class UndecodableFrame(PayloadError):
    """A payload that does not parse as the message its type announces."""
