"""The frames of authenticated runner connections, handled in arrival order off the event loop.

Decoding, validating, replaying and queueing a batch is most of the host's work per record.
Done on the event loop, a busy host answers a new runner's hello only after every batch ahead
of it: under load that took seconds, longer than a runner waits for its welcome, and a runner
that never got in loses its records where the host cannot count them. So the loop only cuts
frames, answers hellos and acknowledges; one worker thread handles the rest, in the order the
frames arrived (per connection, and a connection's end after its frames).

A frame keeps its ingest-budget reservation until the worker is done with it, so the frames
waiting here are bounded by the same budget as the ones being received. A frame that waited
longer than ``shed_after_seconds`` is handled in shedding mode (its records counted as
dropped, not replayed or exported): a host that cannot keep up sheds with a count instead of
falling further behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

ConnT = TypeVar("ConnT")
_log = logging.getLogger("otel_plugin_logs.bridge")


class Job(Generic[ConnT]):
    """One frame body of a connection, or (``body`` None) the news that the connection ended."""

    __slots__ = ("arrived", "body", "conn", "owner", "reserved_bytes")

    def __init__(self, conn: ConnT, body: bytes | None, owner: str = "", reserved_bytes: int = 0) -> None:
        self.conn = conn
        self.body = body
        self.owner = owner
        self.reserved_bytes = reserved_bytes
        self.arrived = time.monotonic()


class IngestWorker(Generic[ConnT]):
    """A FIFO of jobs and the one thread that runs ``handle`` on each."""

    def __init__(self, handle: Callable[[Job[ConnT], bool], None], shed_after_seconds: float) -> None:
        self._handle = handle
        self._shed_after_seconds = shed_after_seconds
        self._jobs: deque[Job[ConnT]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self.shed_frames = 0
        self._thread = threading.Thread(target=self._run, name="otel-plugin-logs-ingest", daemon=True)
        self._thread.start()

    def put(self, job: Job[ConnT]) -> None:
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._jobs and not self._busy

    def drain(self, deadline: float) -> bool:
        """Wait until every job so far is handled, or until ``deadline`` (monotonic)."""
        with self._cond:
            while self._jobs or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def stop(self, deadline: float) -> None:
        self.drain(deadline)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                self._busy = True
            shed = job.body is not None and time.monotonic() - job.arrived > self._shed_after_seconds
            if shed:
                self.shed_frames += 1
            try:
                self._handle(job, shed)
            except Exception:  # handle() reports its own errors; this is a bug of ours
                _log.exception("handling a runner frame failed")
            with self._cond:
                self._busy = False
                self._cond.notify_all()
