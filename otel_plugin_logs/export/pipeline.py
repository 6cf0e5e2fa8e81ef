"""The export queue and its worker: each record leaves it exactly once, exported or dropped.

The queue in front of the exporter is ours, not the SDK's ``BatchLogRecordProcessor``: it is
bounded by count *and* bytes, counts every record it cannot keep, and keeps a failed batch
(retrying with backoff) instead of dropping it after the exporter's ~10 s of retries, so a
collector outage costs waiting, not records. The host acknowledges a record to its runner
only once the queue has settled it. Like the SDK's batch worker, one thread drains it, its
life is a ``WorkerState``, and shutdown honours the one deadline it is given.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.batching import (
    RequestSize,
    encoded_bytes,
    fit_record,
    refused_as_too_large,
)
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.sinks import Outcome, Sink

_log = logging.getLogger("otel_plugin_logs.export")

# Drop reasons of the host's export stage.
DROP_EXPORT_QUEUE_FULL: Final = "export_queue_full"
DROP_EXPORT_REJECTED: Final = "export_rejected"
DROP_EXPORT_FAILED: Final = "export_failed"
DROP_SHUTDOWN: Final = "shutdown_unexported"

Settle = Callable[[Sequence[Item], str | None], None]  # items, drop reason (None: exported)
# A partial batch goes out once the queue has not grown for this long (or the delay passed).
_IDLE_SLICE_SECONDS: Final = 0.025
_MIN_REQUEST_BYTES: Final = 16 * 1024
_MAX_SHRINKS: Final = 3  # a single record refused as too large is cut down this often, then dropped
_SHUTDOWN_JOIN_GRACE_SECONDS: Final = 0.2


class WorkerState(enum.Enum):
    """The export worker's life: RUNNING → STOPPING (``shutdown`` called) → STOPPED."""

    RUNNING = "running"
    STOPPING = "stopping"  # no new records; what is queued goes out until the deadline
    STOPPED = "stopped"  # the worker has ended and the rest is settled


@dataclass(slots=True)
class _Share:
    """What one plugin holds in the export queue (queued or in flight)."""

    records: int = 0
    nbytes: int = 0


@dataclass(slots=True)
class _Retry:
    """The failure streak of the batch in the worker's hands."""

    first_failure: float = 0.0
    backoff_seconds: float = 0.0
    shrinks: int = 0


class ExportPipeline:
    """A bounded queue (records and bytes) drained by one worker thread into a ``Sink``.

    ``settle(items, reason)`` is called exactly once per record: reason None when exported,
    else the drop reason. The worker wakes at the batch threshold or after the schedule delay.
    """

    def __init__(
        self,
        sink: Sink,
        config: HostConfig,
        settle: Settle,
        before_export: Callable[[Sequence[Item]], None] | None = None,
    ) -> None:
        self.sink = sink
        # A sink whose class says ``takes_protobuf = True`` exports ``encode_request``'s bytes:
        # its records are worth encoding once, as they are built (``Entry.encoded``).
        self.takes_protobuf = getattr(sink, "takes_protobuf", False) is True
        self._settle = settle
        self._before_export = before_export
        self._max_records = config.export_max_queue_records
        self._max_bytes = config.export_max_queue_bytes
        self._batch_records = config.export_max_batch_records
        self._batch_bytes = config.export_max_batch_bytes
        self._delay_seconds = config.export_schedule_delay_millis / 1000.0
        self._timeout_seconds = config.export_timeout_millis / 1000.0
        self._max_backoff_seconds = config.export_retry_max_backoff_millis / 1000.0
        self._max_elapsed_seconds = config.export_retry_max_elapsed_millis / 1000.0
        self._queue: deque[Item] = deque()
        # A plugin past its share cannot fill the last share of the queue: others keep that room.
        self._share_records = max(1, self._max_records * config.export_plugin_share_percent // 100)
        self._share_bytes = max(1, self._max_bytes * config.export_plugin_share_percent // 100)
        self._shares: dict[str, _Share] = {}
        self._request_limit = self._batch_bytes  # lowered when the collector refuses a request as too large
        self._bytes = 0  # queued plus in flight
        self._in_flight = 0
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._state = WorkerState.RUNNING
        self._stop_deadline = 0.0  # monotonic; set when the state leaves RUNNING
        self.last_error = ""
        self.failing_since: float | None = None
        self.exported = 0
        self.attempts_failed = 0
        self._shutdown_dropped = 0  # records the worker gave up at the shutdown deadline
        self._thread = threading.Thread(target=self._run, name="otel-plugin-logs-export", daemon=True)
        self._thread.start()

    @property
    def state(self) -> WorkerState:
        return self._state

    def offer(self, items: list[Item]) -> list[Item]:
        """Enqueue; returns the items that did not fit (the caller counts them as dropped)."""
        with self._cond:
            if self._state is not WorkerState.RUNNING:
                return items
            room = self._max_records - len(self._queue) - self._in_flight
            accepted = 0
            for item in items:
                if room <= 0 or not self._admit(item, room):
                    break
                room -= 1
                accepted += 1
            if len(self._queue) >= self._batch_records:
                self._cond.notify()
        return items[accepted:]

    def _admit(self, item: Item, room: int) -> bool:
        """Queue ``item`` if the bounds and its plugin's share allow it (lock held)."""
        size = item.size_bytes
        if self._bytes + size > self._max_bytes:
            return False
        share = self._shares.get(item.plugin_name)
        if share is None:
            share = self._shares[item.plugin_name] = _Share()
        over_share = share.records >= self._share_records or share.nbytes + size > self._share_bytes
        # Beyond its share a plugin may use the queue only up to one share short of full:
        # that last share stays for the plugins below theirs.
        if over_share and (
            room <= self._share_records or self._bytes + size > self._max_bytes - self._share_bytes
        ):
            return False
        self._queue.append(item)
        self._bytes += size
        share.records += 1
        share.nbytes += size
        return True

    def depth(self) -> tuple[int, int]:
        """(records, bytes) waiting or in flight."""
        with self._cond:
            return len(self._queue) + self._in_flight, self._bytes

    def force_flush(self, timeout_seconds: float) -> bool:
        """Export everything queued now; True if done within the timeout."""
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._cond.notify_all()
            while self._flushed < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def shutdown(self, deadline: float) -> int:
        """Export what is queued until ``deadline`` (monotonic), then count the rest. Returns that count.

        A second call returns 0 at once: the first one's deadline is the only one.
        """
        with self._cond:
            if self._state is not WorkerState.RUNNING:
                return 0
            self._state = WorkerState.STOPPING
            self._stop_deadline = deadline
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + _SHUTDOWN_JOIN_GRACE_SECONDS)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._bytes -= sum(item.size_bytes for item in left)
            self._release_shares(left)
            # A batch still in the sink's hands past the deadline was not exported in time
            # (it is settled, exported or dropped, when the sink returns).
            late = self._in_flight if self._thread.is_alive() else 0
            given_up = self._shutdown_dropped
            self._state = WorkerState.STOPPED
        if left:
            self._settle(left, DROP_SHUTDOWN)
        self.sink.shutdown()
        return len(left) + given_up + late

    def _release_shares(self, items: Sequence[Item]) -> None:
        """Items left the queue for good (lock held)."""
        for item in items:
            share = self._shares.get(item.plugin_name)
            if share is not None:
                share.records -= 1
                share.nbytes -= item.size_bytes
                if share.records <= 0:
                    del self._shares[item.plugin_name]

    # --- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        retry = _Retry()
        batch: list[Item] = []
        while True:
            if not batch:
                taken = self._next_batch()
                if taken is None:
                    return
                batch = taken
                retry.shrinks = 0
                if not batch:
                    continue
            batch = self._attempt(batch, retry)

    def _next_batch(self) -> list[Item] | None:
        """Wait for a batch's worth, the delay, a flush or the shutdown; None: the worker is done."""
        with self._cond:
            wait_until = time.monotonic() + self._delay_seconds
            while (
                len(self._queue) < self._batch_records
                and self._state is WorkerState.RUNNING
                and self._flushed >= self._flush_requested
            ):
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    break
                before = len(self._queue)
                self._cond.wait(min(remaining, _IDLE_SLICE_SECONDS))
                if before and len(self._queue) == before:
                    break  # nothing arrived for a slice: the burst is over, send its tail
            flush_target = self._flush_requested
            batch = self._take()
            if batch:
                return batch
            self._flushed = flush_target
            self._cond.notify_all()
            return None if self._state is not WorkerState.RUNNING else []

    def _take(self) -> list[Item]:
        """The next request: up to the batch's records and its encoded bytes (lock held)."""
        batch: list[Item] = []
        size = RequestSize()
        queue = self._queue
        limit = self._request_limit
        while queue and len(batch) < self._batch_records:
            item = queue[0]
            resource = item.resource
            cost = size.cost(resource, item.entry)
            if batch and size.total_bytes + cost > limit:
                break
            queue.popleft()
            if cost > limit:  # alone larger than a request: cut down, never sent whole
                wrappers = cost - encoded_bytes(item.entry)  # the resource and scope around it
                item = item.with_entry(fit_record(item.entry, limit - wrappers))
            batch.append(item)
            size.add(resource, item.entry, cost)
        self._in_flight = len(batch)
        return batch

    def _attempt(self, batch: list[Item], retry: _Retry) -> list[Item]:
        """Export ``batch`` once; returns what is still to be sent ([] once it is settled)."""
        stopping = self._state is not WorkerState.RUNNING
        if stopping and time.monotonic() >= self._stop_deadline:
            with self._cond:
                self._shutdown_dropped += len(batch)
            self._done(batch, DROP_SHUTDOWN)
            return []
        timeout = max(0.05, self._stop_deadline - time.monotonic()) if stopping else self._timeout_seconds
        try:
            if self._before_export is not None:
                self._before_export(batch)
            outcome = self.sink.export(batch, timeout)
        except Exception as error:  # a sink must not raise; if one does, retry
            outcome = Outcome.errored(f"{type(error).__name__}: {error}")
        if not outcome.ok:
            return self._failed(batch, outcome, retry)
        self.failing_since = None
        retry.backoff_seconds = 0.0
        rejected = outcome.rejected_records
        self.exported += len(batch) - rejected
        if rejected:
            self._done(batch[:rejected], DROP_EXPORT_REJECTED)
        self._done(batch[rejected:], None)
        return []

    def _failed(self, batch: list[Item], outcome: Outcome, retry: _Retry) -> list[Item]:
        """After a failed attempt: shrink, drop, or back off and keep the batch."""
        self.attempts_failed += 1
        self.last_error = outcome.error
        if refused_as_too_large(outcome.error):
            single = len(batch) == 1
            batch = self._shrink(batch, retry.shrinks)
            retry.shrinks += 1 if single else 0
            return batch
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            retry.first_failure = now
        if not outcome.retryable:
            self._done(batch, DROP_EXPORT_REJECTED)
            return []
        if self._max_elapsed_seconds and now - retry.first_failure >= self._max_elapsed_seconds:
            self._done(batch, DROP_EXPORT_FAILED)
            retry.first_failure = now
            return []
        retry.backoff_seconds = min(self._max_backoff_seconds, max(0.1, retry.backoff_seconds * 2))
        sleep = retry.backoff_seconds * random.uniform(0.8, 1.2)
        with self._cond:
            if self._state is not WorkerState.RUNNING:
                sleep = min(sleep, max(0.0, self._stop_deadline - time.monotonic()))
            self._cond.wait(sleep)
        return batch

    def _shrink(self, batch: list[Item], shrinks: int) -> list[Item]:
        """A request refused as too large: retry its first half now, the rest after it.

        A single record is cut down to a quarter, at most ``_MAX_SHRINKS`` times, then dropped.
        """
        refused = sum(encoded_bytes(item.entry) for item in batch)
        limit = max(_MIN_REQUEST_BYTES, refused // 2)
        if limit < self._request_limit:
            self._request_limit = limit
            _log.warning(
                "the exporter refused a request of about %d bytes as too large; requests are cut at "
                "%d bytes from now on",
                refused,
                limit,
            )
        if len(batch) > 1:
            keep = batch[: len(batch) // 2]
            back = batch[len(batch) // 2 :]
            with self._cond:
                self._queue.extendleft(reversed(back))
                self._in_flight -= len(back)
            return keep
        item = batch[0]
        if shrinks < _MAX_SHRINKS:
            return [item.with_entry(fit_record(item.entry, encoded_bytes(item.entry) // 4))]
        self._done(batch, DROP_EXPORT_REJECTED)
        return []

    def _done(self, batch: list[Item], reason: str | None) -> None:
        if not batch:
            return
        size = sum(item.size_bytes for item in batch)
        with self._cond:
            self._bytes -= size
            self._release_shares(batch)
            self._in_flight = max(0, self._in_flight - len(batch))
        try:
            self._settle(batch, reason)
        except Exception:  # a bug in the accounting must not stop the exports
            _log.exception("settling %d record(s) failed", len(batch))
