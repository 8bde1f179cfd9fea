"""Bearer tokens with roles; only their SHA-256 digests are kept.

A tokens file holds one token a line, ``<sha256 hex> <role> <label>``, so
the file never reveals a token; ``#`` starts a comment.
"""

import enum
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from receiver.errors import ConfigError

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")
DIGEST_HEX_CHARS = 64


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

    def load_file(self, path: Path) -> int:
        """Accept every token listed in ``path``; return how many."""
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"tokens file {path}: {exc.strerror}") from exc
        count = 0
        for number, line in enumerate(lines, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            token_digest, role, label = _parse_line(fields, f"{path}:{number}")
            self.add_digest(token_digest, role=role, label=label)
            count += 1
        return count


def _parse_line(fields: list[str], where: str) -> tuple[bytes, str, str]:
    if len(fields) != 3:
        raise ConfigError(f"{where}: expected '<sha256 hex> <role> <label>'")
    hex_digest, role, label = fields
    if role.upper() not in Role.__members__:
        raise ConfigError(f"{where}: role must be operator or viewer")
    if len(hex_digest) != DIGEST_HEX_CHARS:
        raise ConfigError(f"{where}: the digest must be 64 hex digits")
    try:
        token_digest = bytes.fromhex(hex_digest)
    except ValueError:
        raise ConfigError(f"{where}: the digest must be 64 hex digits") from None
    if not LABEL_PATTERN.match(label):
        raise ConfigError(f"{where}: bad label {label!r}")
    return token_digest, role.lower(), label


def add_token_to_file(path: Path, *, role: str, label: str) -> str:
    """Create a token, append its digest to ``path`` (mode 0600), return it."""
    if role.upper() not in Role.__members__:
        raise ConfigError(f"role {role!r}: use operator or viewer")
    if not LABEL_PATTERN.match(label):
        raise ConfigError(
            f"label {label!r}: 1-63 letters, digits, '.', '_', '@' or '-'"
        )
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as handle:
        handle.write(f"{digest(token).hex()} {role.lower()} {label}\n")
    return token
