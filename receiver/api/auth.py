"""Bearer tokens with roles; only their SHA-256 digests are kept."""

import enum
import hashlib
import hmac
from dataclasses import dataclass


class Role(enum.IntEnum):
    """What a token may do; higher includes lower."""

    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's label and role."""

    label: str
    role: Role


def digest(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """Maps token digests to principals, compared in constant time."""

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, Principal]] = []

    def add(self, token: str, *, role: str, label: str) -> None:
        """Accept ``token`` with ``role`` ("operator" or "viewer")."""
        self.add_digest(digest(token), role=role, label=label)

    def add_digest(self, token_digest: bytes, *, role: str, label: str) -> None:
        """Accept the token whose SHA-256 digest is ``token_digest``."""
        self._entries.append((token_digest, Principal(label, Role[role.upper()])))

    def authenticate(self, token: str) -> Principal | None:
        """The principal for ``token``, or None."""
        candidate = digest(token)
        found: Principal | None = None
        # Compare against every entry so timing tells nothing about which.
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, candidate):
                found = principal
        return found
