"""A clock for tests: real time plus an offset the test moves forward."""

from __future__ import annotations

import threading
import time


class SkewedClock:
    """Monotonic time that jumps when told to; waits stay real but short, so threads move on."""

    def __init__(self, max_wait_seconds: float = 0.01) -> None:
        self._offset_seconds = 0.0
        self._max_wait_seconds = max_wait_seconds
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_seconds += seconds

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset_seconds

    def wait(self, event: threading.Event, timeout_seconds: float) -> bool:
        return event.wait(min(timeout_seconds, self._max_wait_seconds))


class FrozenClock:
    """Monotonic time that stands still until the test moves it; waits are real and short."""

    def __init__(self, start_seconds: float = 1000.0) -> None:
        self._now_seconds = start_seconds
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now_seconds += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._now_seconds

    def wait(self, event: threading.Event, timeout_seconds: float) -> bool:
        return event.wait(min(timeout_seconds, 0.005))
