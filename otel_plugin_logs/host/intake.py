"""What runners send, taken in: the hello's identity check, batches, and their way to the exporter.

Hellos are answered on the loop thread; every later frame of a connection goes to the ingest
worker, in arrival order. The ledger is touched under the bridge's lock only, for short,
I/O-free updates; building, replaying and exporting run outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from otel_plugin_logs.config.settings import HostConfig
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.pipeline import DROP_EXPORT_QUEUE_FULL, ExportPipeline, Item
from otel_plugin_logs.host import auth
from otel_plugin_logs.host.connection import BatchReceived, ByeReceived, HelloReceived, HelloRefused
from otel_plugin_logs.host.entries import Limits, build_entry, sanitize_counters
from otel_plugin_logs.host.ingest import IngestWorker, Job
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.limits import ACCEPT_ERROR, Frame
from otel_plugin_logs.host.replay import escape_controls
from otel_plugin_logs.host.reports import Reporter
from otel_plugin_logs.host.server import ConnectionServer, SocketDriver
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

_log = logging.getLogger("otel_plugin_logs.bridge")

ResourceMaker = Callable[[PluginState, int], ResourceInfo]


class Intake:
    """The host's ``ConnectionHandler``, and the path of every batch to the export queue."""

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
        self.rejected: Counter[str] = Counter()  # connections refused before they became runners
        self.accept_errors = 0
        self.pipeline: ExportPipeline | None = None
        self.server: ConnectionServer | None = None
        self.worker: IngestWorker[SocketDriver] | None = None

    # --- ConnectionHandler (loop thread) -----------------------------------------------------

    def on_hello(self, driver: SocketDriver, event: HelloReceived | HelloRefused) -> None:
        assert self.server is not None
        self.server.hello_done(driver)
        if isinstance(event, HelloRefused):
            self.reject(driver, event.reason, event.detail)
            return
        hello = event.hello
        refusal = auth.check_peer_uid(driver.peer_uid)
        if refusal is not None:
            self.reject(driver, refusal.reason, refusal.detail)
            return
        digest = auth.token_digest(hello.token)
        with self._lock:
            registration = self._ledger.registrations.get(digest)
            refusal = auth.check_token(registration, digest)
            if refusal is not None or registration is None:
                self.reject(driver, "bad_token", "unknown session token")
                return
            driver.plugin_name = registration.plugin
            peer = driver.peer_pid if driver.peer_pid is not None else hello.pid
            refusal = auth.check_pid(registration, peer)
            if refusal is not None:
                self.reject(driver, refusal.reason, refusal.detail)
                return
            registration.connected = True
            plugin = self._ledger.plugin(registration.plugin, hello.plugin_version or registration.version)
            key = StreamKey(hello.stream, digest)
            stream = plugin.streams.get(key)
            if stream is None and not self._ledger.make_room_for_stream(plugin, digest):
                limit = self._config.max_streams_per_runner
                self.reject(driver, "too_many_streams", f"runner already has {limit} streams connected")
                return
            if stream is None:
                resource = registration.resource
                if resource is None or resource.attributes.get("process.pid") != peer:
                    resource = self._make_resource(plugin, peer)
                stream = self._ledger.open_stream(plugin, key, resource, peer)
            elif stream.conn is not None and not stream.conn.closed:
                stream.conn.close()  # the runner reconnected before we saw the old one drop
            stream.conn = driver
            stream.closed = False
            driver.stream = stream
            self.server.authenticated(driver)
            driver.reader.set_owner(plugin.name)
            plugin.counters.connections += 1
            settled = stream.settled
        driver.write(driver.machine.welcome(settled, self._config.max_frame_bytes))

    def on_frame(self, driver: SocketDriver, frame: Frame) -> None:
        assert self.worker is not None
        self.worker.put(Job(driver, frame.body, frame.owner, frame.reserved_bytes))

    def on_lost(self, driver: SocketDriver) -> None:
        if driver.stream is not None and self.worker is not None:
            self.worker.put(Job(driver, None))  # after the frames it sent before it went

    def reject(self, driver: SocketDriver, reason: str, detail: str) -> None:
        self._count_bad_input(driver, reason)
        self._reporter.warn_once(
            driver.plugin_name,
            reason,
            "rejected a runner connection of plugin %s (pid %s): %s: %s",
            driver.plugin_name,
            driver.peer_pid,
            reason,
            detail,
        )
        driver.write(driver.machine.reject(reason, detail))
        driver.close()

    def bad_input(self, driver: SocketDriver, reason: str, detail: str) -> None:
        driver.machine.violation(reason, detail)  # what it sent after the bad frame is not taken in
        self._count_bad_input(driver, reason)
        self._reporter.warn_once(
            driver.plugin_name,
            reason,
            "closed the connection of plugin %s (pid %s): %s: %s",
            driver.plugin_name,
            driver.peer_pid,
            reason,
            escape_controls(detail[:300]),
        )
        driver.close()

    def refused(self, reason: str, pid: int | None, uid: int | None) -> None:
        with self._lock:
            self.rejected[reason] += 1
        message = "refused a runner connection (pid %s, uid %s): %s"
        self._reporter.warn_once("-", reason, message, pid, uid, reason)

    def accept_failed(self, error: OSError) -> None:
        """Accept failed (EMFILE and friends): counted, reported once per interval, never a traceback."""
        with self._lock:
            self.accept_errors += 1
            self.rejected[ACCEPT_ERROR] += 1
            count = self.accept_errors
        self._reporter.warn_once(
            "-",
            ACCEPT_ERROR,
            "cannot accept runner connections: %s (%d failed accepts so far; the listener backs off)",
            error,
            count,
        )

    def _count_bad_input(self, driver: SocketDriver, reason: str) -> None:
        with self._lock:
            if driver.stream is None:
                self.rejected[reason] += 1  # refused before it became a runner of a plugin
            plugin = self._ledger.plugins.get(driver.plugin_name)
            if plugin is not None:
                plugin.counters.bad_input[reason] += 1

    # --- the ingest worker -------------------------------------------------------------------

    def handle_job(self, job: Job[SocketDriver], shed: bool) -> None:
        """A frame of an authenticated connection, or its end (ingest worker thread)."""
        driver = job.conn
        try:
            if job.body is None:
                self._stream_lost(driver)
                return
            event = driver.machine.receive_frame(job.body)
            if isinstance(event, BatchReceived | ByeReceived) and driver.stream is not None:
                self.ingest(driver.stream, event.header, event.frame_bytes, shed)
            elif event is not None:
                reason = getattr(event, "reason", "unexpected_frame")
                self.bad_input(driver, reason, getattr(event, "detail", ""))
        except Exception as error:  # a bug of ours must not take the host down with it
            self.bad_input(driver, "internal_error", f"{type(error).__name__}: {error}")
            _log.debug("internal error on a runner connection", exc_info=True)
        finally:
            if job.reserved_bytes and self.server is not None:
                server = self.server
                server.on_loop(lambda: server.budget.release(job.owner, job.reserved_bytes))

    def _stream_lost(self, driver: SocketDriver) -> None:
        """A connection's end, once its frames were handled."""
        said_bye = driver.machine.said_bye
        with self._lock:
            stream = driver.stream
            if stream is None or stream.conn is not driver:
                return
            stream.conn = None
            stream.closed = True
            if said_bye or self._ledger.runner_gone(stream):
                self._ledger.finish(stream)
        if said_bye:
            return
        _log.debug(
            "runner of plugin %s (pid %s) disconnected without a bye", driver.plugin_name, driver.peer_pid
        )
        if driver.peer_pid is not None and not auth.process_alive(driver.peer_pid):
            # It crashed: what it accepted but never sent is lost for good; count it now.
            digest = stream.key.digest or ""
            with self._lock:
                registration = self._ledger.registrations.get(digest)
                if registration is not None and registration.pid == driver.peer_pid:
                    self._ledger.end_registration(digest)  # e.g. a runner taken back after a host restart
                if stream.conn is None and not stream.finished:
                    self._ledger.finish(stream)
                self._ledger.release_registration(digest)

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
        entries = []
        replayed = 0
        for record in fresh:
            entry, levelno, stacktrace = build_entry(record, self._limits, now_ns)
            entries.append(entry)
            if self._config.replay:
                try:
                    if plugin.replayer.replay(entry, levelno, stacktrace, stream.otel):
                        replayed += 1
                except Exception:
                    # A host handler failed; logging's own handleError already reported it
                    # for handler errors, so this is a bug in a filter or in ours.
                    _log.debug("replay failed", exc_info=True)
        self._enqueue(stream, ticket, entries, replayed)

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
        for entry in entries:
            entry.uid = f"{prefix}{entry.seq:016x}"
        items: list[Item] = [(stream.resource, entry, ticket, entry.size_estimate()) for entry in entries]
        refused = pipeline.offer(items)
        if refused:
            self.settle(refused, DROP_EXPORT_QUEUE_FULL)

    def settle(self, items: Sequence[Item], reason: str | None) -> None:
        """Called once per record as it leaves the export queue (exported, or dropped)."""
        with self._lock:
            streams = set()
            for _, _, ticket, _ in items:
                if not isinstance(ticket, Ticket):
                    continue  # a bridge notice or a stderr line, outside the per-record accounting
                ticket.pending -= 1
                plugin = ticket.stream.plugin
                plugin.pending -= 1
                if reason is None:
                    plugin.counters.exported += 1
                else:
                    plugin.counters.host_dropped[reason] += 1
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
            for _, entry, ticket, _ in items:
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
