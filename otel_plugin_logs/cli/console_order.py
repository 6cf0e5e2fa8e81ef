"""Console records put back in time order within a short window.

A runner's records reach the host in batches (up to its schedule delay later), while a line it
writes to stderr is replayed the moment it is read: shown as they arrive, a stderr line can
print ahead of records logged before it. Holding each record for a window a little longer than
that delay, and releasing the held ones oldest first, shows them in the order they happened.
A record never waits longer than the window after it arrived, whatever time it claims.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TimeOrderedRelease(Generic[T]):
    """Items pushed with their own time come out through ``release`` oldest first.

    Each item is held at most ``window_seconds`` after it was pushed: when the item that has
    waited longest is due, the held items are released oldest first up to and including it.
    ``settled`` (if given) is called once after each run of releases, when nothing more is
    due: a console writes the run's lines at once there, rather than one write per line.
    """

    def __init__(
        self,
        window_seconds: float,
        release: Callable[[T], None],
        clock: Callable[[], float] = time.monotonic,
        settled: Callable[[], None] | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        self._release = release
        self._settled = settled
        self._clock = clock
        self._held: list[tuple[float, int, T]] = []  # a heap of (the item's time, order, item)
        self._arrivals: deque[tuple[float, int]] = deque()  # (due, order), in the order pushed
        self._gone: set[int] = set()  # released out of arrival order, still in _arrivals
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._releasing = threading.Lock()  # one release at a time, in order

    def push(self, at_seconds: float, item: T) -> None:
        with self._cond:
            if not self._closed:
                order = next(self._order)
                # Due after every held item: the release thread's next wake-up changes only when
                # nothing was held (a wake-up per record would be a thread switch per record).
                idle = self._next_due() is None
                heapq.heappush(self._held, (at_seconds, order, item))
                self._arrivals.append((self._clock() + self.window_seconds, order))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="otel-plugin-logs-console", daemon=True
                    )
                    self._thread.start()
                if idle:
                    self._cond.notify()
                return
        self._release(item)  # closed: nothing is held any more, shown at once
        if self._settled is not None:
            self._settled()

    def held(self) -> int:
        with self._cond:
            return len(self._held)

    def drain(self) -> None:
        """Release everything held now, oldest first (at flush, before a summary, at close)."""
        with self._releasing:
            with self._cond:
                items = [heapq.heappop(self._held)[2] for _ in range(len(self._held))]
                self._arrivals.clear()
                self._gone.clear()
            try:
                for item in items:
                    self._release(item)
            finally:
                if self._settled is not None:
                    self._settled()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.drain()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _next_due(self) -> tuple[float, int] | None:
        """(due, order) of the item held longest; lock held."""
        while self._arrivals and self._arrivals[0][1] in self._gone:
            self._gone.discard(self._arrivals.popleft()[1])
        return self._arrivals[0] if self._arrivals else None

    def _run(self) -> None:
        unsettled = False  # items released since settled was last called
        while True:
            with self._cond:
                if self._closed:
                    return
                first = self._next_due()
                wait = None if first is None else first[0] - self._clock()
                due = first is not None and wait is not None and wait <= 0
                if not due and not unsettled:
                    self._cond.wait(wait)
                    continue
                if not self._releasing.acquire(blocking=False):
                    self._cond.wait(0.001)  # drain() holds it and waits for _cond: let it have _cond
                    continue
                # Every item due now at once: one pass over the lock per run of releases, not
                # one per record, which the pushing thread would have to fight for each time.
                boxes = self._pop_due(first) if due else []
            try:
                # The handler reports its own stream errors; this thread must go on regardless.
                with contextlib.suppress(Exception):
                    if not boxes:
                        unsettled = False
                        if self._settled is not None:
                            self._settled()
                    for box in boxes:
                        unsettled = self._settled is not None
                        self._release(box[0])
            finally:
                self._releasing.release()

    def _pop_due(self, first: tuple[float, int] | None) -> list[tuple[T]]:
        """The held items due now, oldest first, each in a box; lock held."""
        now = self._clock()
        boxes = []
        while first is not None and first[0] <= now and self._held:
            boxes.append(self._pop_oldest(first))
            first = self._next_due()
        return boxes

    def _pop_oldest(self, first: tuple[float, int] | None) -> tuple[T]:
        """The oldest held item, in a box (an item may itself be None); lock held."""
        _, order, item = heapq.heappop(self._held)
        if first is not None and order == first[1]:
            self._arrivals.popleft()
        else:
            self._gone.add(order)
        return (item,)
