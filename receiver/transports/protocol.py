"""The asyncio protocol that feeds a guest connection's bytes to its session."""

import asyncio
import logging
from collections.abc import Callable

from receiver.sessions.session import GuestSession

log = logging.getLogger(__name__)

SessionFactory = Callable[[asyncio.Transport], GuestSession]


class GuestProtocol(asyncio.Protocol):
    """Bridges one stream transport to one :class:`GuestSession`."""

    def __init__(self, make_session: SessionFactory) -> None:
        self._make_session = make_session
        self.session: GuestSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Create the session for the new connection."""
        assert isinstance(transport, asyncio.Transport)
        self.session = self._make_session(transport)

    def data_received(self, data: bytes) -> None:
        """Hand received bytes to the session."""
        if self.session is not None:
            self.session.feed(data)

    def eof_received(self) -> bool:
        """Close our side when the guest closes its side."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Let the session account for the end of the connection."""
        if self.session is not None:
            self.session.closed_by_peer()
