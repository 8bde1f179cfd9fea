"""Logging helpers: rate-limited warnings about misbehaving guests."""

import logging
import time
from dataclasses import dataclass, field

WARN_INTERVAL_S = 10.0


@dataclass(slots=True)
class RateLimitedLog:
    """Emit a warning per (VM, cause) at most once per interval."""

    logger: logging.Logger
    interval_s: float = WARN_INTERVAL_S
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _suppressed: dict[tuple[str, str], int] = field(default_factory=dict)

    def warning(self, vm: str, cause: str, message: str, *args: object) -> None:
        """Log ``message`` for ``vm`` unless ``cause`` was logged recently."""
        key = (vm, cause)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        suffix = f" ({suppressed} more since last report)" if suppressed else ""
        self.logger.warning("vm %s: " + message + "%s", vm, *args, suffix)

    def forget(self, vm: str) -> None:
        """Drop the state kept for ``vm``."""
        for key in [key for key in self._last if key[0] == vm]:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)
