"""Logging helpers: rate-limited warnings about misbehaving guests."""

import logging
import time
from dataclasses import dataclass, field

WARN_INTERVAL_S = 10.0


@dataclass(slots=True)
class WarningLimiter:
    """Let one warning per cause through per interval, counting the rest.

    Each VM owns one, so a noisy guest silences only its own repeats.
    """

    interval_s: float = WARN_INTERVAL_S
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def warning(
        self, logger: logging.Logger, vm: str, cause: str, message: str, *args: object
    ) -> None:
        """Log ``message`` about ``vm`` unless ``cause`` was logged recently."""
        now = time.monotonic()
        last = self._last.get(cause)
        if last is not None and now - last < self.interval_s:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return
        suppressed = self._suppressed.pop(cause, 0)
        self._last[cause] = now
        suffix = f" ({suppressed} more since the last report)" if suppressed else ""
        logger.warning("vm %s: " + message + "%s", vm, *args, suffix)
