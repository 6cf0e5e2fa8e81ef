"""Console records put back in time order within a short window.

A runner's records reach the host in batches (up to its schedule delay later), while a line it
writes to stderr is replayed the moment it is read: shown as they arrive, a stderr line can
print ahead of records logged before it. Holding each record for a window a little longer than
that delay, and releasing the held ones oldest first, shows them in the order they happened.
A record never waits much longer than the window after it arrived, whatever time it claims.

The pushing thread (the one replaying records into logging) only appends to a deque: no lock,
no wake-up per record. The release thread wakes once per tick, takes what was pushed since and
releases what is due in one call (a console: one write), so the two threads meet a few dozen
times a second, not once per record.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Final, Generic, TypeVar

T = TypeVar("T")

_TICKS_PER_WINDOW: Final = 8
_MAX_TICK_SECONDS: Final = 0.05
_IDLE_CHECK_SECONDS: Final = 1.0  # an idle release thread looks at its queue this often anyway
# A pushed item is a plain tuple (due_seconds, at_seconds, item): the cheapest thing to build per
# record, and the release side sorts and searches it with these C-level keys, no Python per item.
_DUE: Final = itemgetter(0)
_AT: Final = itemgetter(1)
_ITEM: Final = itemgetter(2)


class TimeOrderedRelease(Generic[T]):
    """Items pushed with their own time come out through ``release`` oldest first, in batches.

    Each item is held ``window_seconds`` after it was pushed (and at most one tick more), then
    it and every held item not later than it in time are released, oldest first (same times:
    in the order pushed). ``release`` gets each run of released items at once, never empty; it
    is called one run at a time, in order, and must not push.
    """

    def __init__(
        self,
        window_seconds: float,
        release: Callable[[list[T]], None],
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        self.tick_seconds = (
            tick_seconds
            if tick_seconds is not None
            else min(_MAX_TICK_SECONDS, window_seconds / _TICKS_PER_WINDOW)
        )
        self._release = release
        self._clock = clock
        self._incoming: deque[tuple[float, float, T]] = deque()  # appended by pushers only
        # Owned by whoever holds _releasing: items in the order pushed (from _first on, so their
        # due times ascend), and the items not yet released, sorted by their time.
        self._arrivals: list[tuple[float, float, T]] = []
        self._first = 0
        self._held: list[tuple[float, float, T]] = []
        self._releasing = threading.Lock()
        self._wake = threading.Event()
        self._idle = False  # the release thread sleeps until a push wakes it
        self._closed = False
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def push(self, at_seconds: float, item: T) -> None:
        # deque.append is atomic: the pusher never waits for the release thread.
        self._incoming.append((self._clock() + self.window_seconds, at_seconds, item))
        self._pushed()

    def push_many(self, items: list[tuple[float, T]]) -> None:
        """``push`` of each ``(at_seconds, item)`` in turn, pushed at one instant: one append of them
        all, one wake-up."""
        due = self._clock() + self.window_seconds
        self._incoming.extend([(due, at_seconds, item) for at_seconds, item in items])
        self._pushed()

    def _pushed(self) -> None:
        if self._closed:  # nothing is held any more (or close's drain may have missed it): shown at once
            self.drain()
            return
        if self._thread is None:
            self._start()
        if self._idle:
            self._wake.set()

    def held(self) -> int:
        with self._releasing:
            self._collect()
            return len(self._held)

    def drain(self) -> None:
        """Release everything held now, oldest first (at flush, before a summary, at close)."""
        with self._releasing:
            self._collect()
            batch = list(map(_ITEM, self._held))
            self._held.clear()
            self._arrivals.clear()
            self._first = 0
            if batch:
                self._release(batch)

    def close(self) -> None:
        """Release what is held and stop the release thread; idempotent."""
        self._closed = True
        self._wake.set()
        self.drain()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="otel-plugin-logs-console", daemon=True)
                thread.start()
                self._thread = thread

    def _collect(self) -> None:
        """Hold what was pushed since the last pass; _releasing held."""
        incoming = self._incoming
        if not incoming:
            return
        popleft = incoming.popleft
        # Only as many as are there now: pushers may append meanwhile, and nothing else pops.
        fresh = [popleft() for _ in range(len(incoming))]
        self._arrivals.extend(fresh)
        held = self._held
        fresh.sort(key=_AT)
        in_order = not held or held[-1][1] <= fresh[0][1]
        held.extend(fresh)
        if not in_order:
            held.sort(key=_AT)  # two sorted runs: timsort merges them, and keeps ties in push order

    def _pop_due(self, now: float) -> list[T]:
        """The items released now, oldest first; _releasing held."""
        arrivals, first = self._arrivals, self._first
        due_end = bisect.bisect_right(arrivals, now, lo=first, key=_DUE)
        if due_end == first:
            return []
        # Items already released among the due ones raise the limit only to times already shown.
        limit = max(map(_AT, arrivals[first:due_end]))
        if due_end * 2 > len(arrivals):
            del arrivals[:due_end]
            self._first = 0
        else:
            self._first = due_end
        held = self._held
        count = bisect.bisect_right(held, limit, key=_AT)
        batch = list(map(_ITEM, held[:count]))
        del held[:count]
        return batch

    def _pass(self) -> float | None:
        """One release pass; the time the next item is due (None: nothing held)."""
        with self._releasing:
            self._collect()
            batch = self._pop_due(self._clock())
            if batch:
                # The console reports its own stream errors; this thread must go on regardless.
                with contextlib.suppress(Exception):
                    self._release(batch)
            if not self._held:  # what is still in _arrivals was released with a later item
                self._arrivals.clear()
                self._first = 0
                return None
            return self._arrivals[self._first][0]

    def _run(self) -> None:
        wake = self._wake
        while not self._closed:
            started = self._clock()
            due: float | None = None
            with contextlib.suppress(Exception):
                due = self._pass()
            if due is None and not self._incoming:
                self._idle = True
                if not self._incoming:  # a push that saw _idle False is in _incoming by now
                    wake.wait(_IDLE_CHECK_SECONDS)
                wake.clear()
                self._idle = False
                continue
            wait = max(started + self.tick_seconds, due if due is not None else 0.0) - self._clock()
            if wait > 0:
                wake.wait(wait)
                wake.clear()
