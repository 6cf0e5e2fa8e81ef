"""Batches taken in: deduplicated, counted, rate limited, built, replayed, and offered for export.

From runner connections (the ingest worker) and from the host's own RPC (``take_rpc_batch``).
The ledger is touched under the bridge's lock only, for short, I/O-free updates; building,
replaying and exporting run outside it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.pipeline import DROP_EXPORT_QUEUE_FULL, ExportPipeline
from otel_plugin_logs.host.entries import Limits, build_entry, sanitize_counters
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.reports import Reporter
from otel_plugin_logs.host.streams import (
    DROP_INVALID,
    DROP_OVERLOAD,
    DROP_RATE_LIMITED,
    PluginState,
    Stream,
    StreamKey,
    Ticket,
)
from otel_plugin_logs.wire.messages import BYE
from otel_plugin_logs.wire.validate import BatchHeader, validate_records

ResourceMaker = Callable[[PluginState, int], ResourceInfo]


class Intake:
    """The path of every batch to the export queue, and the settling of its records."""

    def __init__(
        self,
        config: HostConfig,
        lock: threading.RLock,
        ledger: Ledger,
        reporter: Reporter,
        limits: Limits,
        *,
        make_resource: ResourceMaker,
        save_registry: Callable[[], None],
        write_ahead: bool,
    ) -> None:
        self._config = config
        self._lock = lock
        self._ledger = ledger
        self._reporter = reporter
        self._limits = limits
        self._make_resource = make_resource
        self._save_registry = save_registry
        self._write_ahead = write_ahead  # only a configured runtime dir outlives the host
        self.pipeline: ExportPipeline | None = None  # set once the bridge has started

    # --- batches --------------------------------------------------------------------------------

    def ingest(self, stream: Stream, header: BatchHeader, frame_bytes: int = 0, shed: bool = False) -> None:
        records, invalid = validate_records(header.records) if header.records else ([], [])
        now_ns = time.time_ns()
        plugin = stream.plugin
        with self._lock:
            fresh, ticket = self._accept(stream, header, records, len(invalid), frame_bytes, shed)
        if invalid:
            self._reporter.warn_once(
                plugin.name,
                DROP_INVALID,
                "plugin %s sent %d invalid record(s): %s",
                plugin.name,
                len(invalid),
                invalid[0],
            )
        if not fresh:
            with self._lock:  # nothing to export: settled once every earlier record is
                self._ledger.advance(stream)
            return
        limits = self._limits
        pipeline = self.pipeline
        if pipeline is not None and pipeline.takes_protobuf:  # encoded once, here, with its uid
            prefix = stream.key.record_uid_prefix(plugin.name)
            built = [build_entry(record, limits, now_ns, uid_prefix=prefix) for record in fresh]
        else:
            built = [build_entry(record, limits, now_ns) for record in fresh]
        replayed = stream.plugin.replayer.replay_all(built, stream.otel) if self._config.replay else 0
        self._enqueue(stream, ticket, [entry for entry, _, _ in built], replayed)

    def _accept(
        self,
        stream: Stream,
        header: BatchHeader,
        records: list[Any],
        invalid: int,
        frame_bytes: int,
        shed: bool,
    ) -> tuple[list[Any], Ticket]:
        """Dedupe, count and rate-limit a batch's records; queue its ticket (lock held)."""
        plugin = stream.plugin
        counters = plugin.counters
        fresh = []
        duplicates = 0
        high = stream.high
        for record in records:
            seq = record[0]
            if seq <= high:
                duplicates += 1  # delivered already: discarded
            else:
                high = seq
                fresh.append(record)
                if seq <= stream.in_doubt:
                    duplicates += 1  # a killed host may have exported it: exported again
        stream.high = high
        stream.received += len(fresh) + invalid
        counters.received += len(fresh) + invalid
        counters.duplicates += duplicates
        if invalid:
            counters.host_dropped[DROP_INVALID] += invalid
        if shed and fresh:
            # The frame waited too long for the worker: counted, not built, replayed or exported.
            counters.host_dropped[DROP_OVERLOAD] += len(fresh)
            del fresh[:]
        now = time.monotonic()
        allowed = plugin.limiter.take(len(fresh), now)
        if allowed and frame_bytes and plugin.byte_limiter.rate > 0:
            # Records share their frame's size: a few huge records cost what many small ones do.
            per_record = max(1, frame_bytes // max(1, len(header.records)))
            allowed = min(allowed, plugin.byte_limiter.take(allowed * per_record, now) // per_record)
        if allowed < len(fresh):
            counters.host_dropped[DROP_RATE_LIMITED] += len(fresh) - allowed
            del fresh[allowed:]
        # Queued in the same step that raised stream.high: a concurrent batch of the same
        # stream (handle_batch) cannot settle past records that are still being built.
        ticket = Ticket(stream, high, len(fresh))
        stream.tickets.append(ticket)
        plugin.pending += len(fresh)
        stream.accepted = max(stream.accepted, header.accepted, high)
        if header.dropped:
            self._ledger.take_runner_drops(stream, sanitize_counters(header.dropped))
        if header.flushed:
            stream.flushed = max(stream.flushed, header.flushed)
        self._ledger.check_gap(stream, final=header.t == BYE)
        return fresh, ticket

    def _enqueue(self, stream: Stream, ticket: Ticket, entries: list[Entry], replayed: int) -> None:
        plugin = stream.plugin
        pipeline = self.pipeline
        with self._lock:
            plugin.counters.replayed += replayed
            if pipeline is None:
                plugin.counters.discarded += len(entries)
                plugin.pending -= len(entries)
                ticket.pending = 0
                self._ledger.advance(stream)
                return
        prefix = stream.key.record_uid_prefix(plugin.name)
        resource = stream.resource
        items = []
        for entry in entries:
            if not entry.uid:  # given at build time when the record was encoded
                entry.uid = f"{prefix}{entry.seq:016x}"
            items.append(Item(resource, entry, ticket, entry.size_estimate()))  # Item.of, inline
        refused = pipeline.offer(items)
        if refused:
            self.settle(refused, DROP_EXPORT_QUEUE_FULL)

    def settle(self, items: Sequence[Item], reason: str | None) -> None:
        """Called once per record as it leaves the export queue (exported, or dropped)."""
        # Counted per ticket first (a batch holds a few runner batches), outside the lock.
        counts = Counter([item.ticket for item in items])
        with self._lock:
            streams = set()
            for ticket, count in counts.items():
                if not isinstance(ticket, Ticket):
                    continue  # a bridge notice or a stderr line, outside the per-record accounting
                ticket.pending -= count
                plugin = ticket.stream.plugin
                plugin.pending -= count
                if reason is None:
                    plugin.counters.exported += count
                else:
                    plugin.counters.host_dropped[reason] += count
                streams.add(ticket.stream)
            for stream in streams:
                self._ledger.advance(stream)

    def mark_in_doubt(self, items: Sequence[Item]) -> None:
        """Write ahead, before an export: what a host killed during it may have exported.

        A restarted host counts those records as duplicates when the runner resends them.
        """
        if not self._write_ahead:
            return
        changed = False
        with self._lock:
            for item in items:
                entry, ticket = item.entry, item.ticket
                if not isinstance(ticket, Ticket):
                    continue
                stream = ticket.stream
                if entry.seq > stream.exported_high and not stream.key.from_rpc:
                    stream.exported_high = entry.seq
                    changed = True
            if changed:
                self._ledger.dirty = True
        if changed:
            self._save_registry()

    def take_rpc_batch(self, plugin_name: str, header: BatchHeader, pid: int) -> int:
        """A batch of the host's own RPC; returns the stream's settled sequence number."""
        key = StreamKey(header.stream)
        with self._lock:
            retired = self._ledger.retired_rpc_settled(plugin_name, header.stream)
            if retired is not None:
                return retired  # it said bye and everything is settled: a retry, nothing new
            plugin = self._ledger.plugin(plugin_name)
            stream = plugin.streams.get(key)
            if stream is None:
                stream = self._ledger.open_stream(plugin, key, self._make_resource(plugin, pid), pid)
        self.ingest(stream, header)
        with self._lock:
            self._ledger.advance(stream)
            if header.t == BYE and not stream.finished:
                stream.closed = True
                self._ledger.finish(stream)
            return stream.settled
