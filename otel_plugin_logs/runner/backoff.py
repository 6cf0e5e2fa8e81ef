"""How long the sender waits before it tries the host again."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Final

    from otel_plugin_logs.runner.clock import Clock

MIN_BACKOFF_SECONDS: Final = 0.05


class Backoff:
    """Doubles with each failure up to a cap, with jitter; an acknowledgement starts it over."""

    __slots__ = ("_cap_seconds", "_clock", "_next_attempt", "seconds")

    def __init__(self, clock: Clock, cap_seconds: float) -> None:
        self._clock = clock
        self._cap_seconds = cap_seconds
        self._next_attempt = 0.0
        self.seconds = 0.0

    def failed(self) -> None:
        """An attempt failed: the next one waits twice as long (at least the minimum)."""
        self.seconds = min(self._cap_seconds, max(MIN_BACKOFF_SECONDS, self.seconds * 2))
        # Jitter, so that runners of a restarted host do not reconnect in lockstep.
        # os.urandom, not secrets or random: either costs every plugin its import and its teardown.
        jitter = 0.8 + 0.4 * (int.from_bytes(os.urandom(2), "big") / 0x10000)
        self._next_attempt = self._clock.monotonic() + self.seconds * jitter

    def reset(self) -> None:
        """The host takes our records: a later failure retries soon."""
        self.seconds = 0.0

    def ready(self) -> bool:
        """Whether the wait since the last failure is over."""
        return self._clock.monotonic() >= self._next_attempt
