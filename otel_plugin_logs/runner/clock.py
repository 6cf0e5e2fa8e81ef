"""The sender's sense of time, injectable so that backoff and deadlines are testable."""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Protocol

    # Only a type: the clocks given are checked by mypy, not at run time.
    class Clock(Protocol):
        """Monotonic time, and waiting on an event for at most some seconds of it."""

        def monotonic(self) -> float:
            """Seconds since an arbitrary point; never goes back."""
            ...

        def wait(self, event: threading.Event, timeout_seconds: float) -> bool:
            """Wait until ``event`` is set or the timeout passes; True if it was set."""
            ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout_seconds: float) -> bool:
        return event.wait(timeout_seconds)
