"""The bridge's parts, wired together, and what runs between ``start()`` and ``shutdown()``.

``HostParts`` are made once, with the bridge; ``HostEngine`` opens the sink and the export
pipeline, runs the loop thread (the server and the periodic work) and the ingest worker, and
takes them down again in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.export.settings import ExportSettings, attribute_limits, build_sink
from otel_plugin_logs.export.sinks import NullSink, Sink
from otel_plugin_logs.host.drain import Drain
from otel_plugin_logs.host.entries import Limits
from otel_plugin_logs.host.guards import quiet_new_event_loop
from otel_plugin_logs.host.ingest import IngestWorker
from otel_plugin_logs.host.intake import Intake
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.limits import ConnectionLimits
from otel_plugin_logs.host.reports import Reporter, ReportHook
from otel_plugin_logs.host.resources import PluginResources
from otel_plugin_logs.host.runtime import RuntimeDir
from otel_plugin_logs.host.server import ConnectionServer
from otel_plugin_logs.host.sessions import Sessions
from otel_plugin_logs.host.streams import Stream
from otel_plugin_logs.host.supervisor import Supervisor
from otel_plugin_logs.wire import messages

ACK_INTERVAL_SECONDS: Final = 0.05


@dataclass(slots=True)
class HostParts:
    config: HostConfig
    lock: threading.RLock
    ledger: Ledger
    runtime: RuntimeDir
    resources: PluginResources
    reporter: Reporter
    intake: Intake
    sessions: Sessions
    supervisor: Supervisor
    drain: Drain
    inputs_closed: threading.Event  # spawned runners stopped: nothing new is taken


def make_parts(config: HostConfig, environ: Mapping[str, str], on_report: ReportHook | None) -> HostParts:
    lock = threading.RLock()
    hooks = _LedgerHooks()
    ledger = Ledger(config, on_retired=hooks.mark_retired, take_unsent_at_exit=hooks.take_unsent)
    runtime = hooks.runtime = RuntimeDir(config.runtime_dir, lock, ledger)
    resources = PluginResources()
    reporter = Reporter(config, lock, ledger, on_report=on_report)
    count_limit, length_limit = attribute_limits(environ)
    limits = Limits(
        config.max_body_bytes,
        min(config.max_attribute_length, length_limit or config.max_attribute_length),
        count_limit,
    )
    intake = Intake(
        config,
        lock,
        ledger,
        reporter,
        limits,
        make_resource=resources.for_process,
        save_registry=runtime.save,
        write_ahead=not runtime.owned,
    )
    sessions = Sessions(config, lock, ledger, reporter, intake, resources.for_process)
    supervisor = hooks.supervisor = Supervisor(config, lock, ledger, reporter)
    drain = Drain(lock, ledger, config.shutdown_timeout_millis / 1000.0)
    inputs_closed = threading.Event()
    supervisor.stopped = drain.stopped = inputs_closed.is_set
    return HostParts(
        config,
        lock,
        ledger,
        runtime,
        resources,
        reporter,
        intake,
        sessions,
        supervisor,
        drain,
        inputs_closed,
    )


class _LedgerHooks:
    """The ledger's way to the runtime dir's exit counters (the dir is made after the ledger), and
    to the supervisor."""

    runtime: RuntimeDir | None = None
    supervisor: Supervisor | None = None  # told when a spawned runner's records all settled

    def mark_retired(self, stream: Stream) -> None:
        if self.runtime is not None:
            self.runtime.mark_retired(stream)
        if self.supervisor is not None:
            self.supervisor.stream_retired(stream)

    def take_unsent(self, digest: str) -> int:
        return self.runtime.take_unsent(digest) if self.runtime is not None else 0


class HostEngine:
    def __init__(self, parts: HostParts) -> None:
        self._parts = parts
        self.sink: Sink | None = None
        self.pipeline: ExportPipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server: ConnectionServer | None = None
        self._worker: IngestWorker[Any] | None = None

    @property
    def sink_description(self) -> str:
        return self.sink.description if self.sink is not None else ""

    def open_sink(self, settings: ExportSettings, override: Sink | None) -> None:
        parts = self._parts
        try:
            self.sink = override or build_sink(settings, parts.config)
        except OSError as error:
            parts.runtime.clean_up()
            where = settings.file_path or settings.destination()
            raise ConfigError(f"cannot open the export sink {where}: {error}") from None
        if not isinstance(self.sink, NullSink):
            mark = None if parts.runtime.owned else parts.intake.mark_in_doubt
            self.pipeline = ExportPipeline(self.sink, parts.config, parts.intake.settle, mark)
        parts.intake.pipeline = parts.reporter.pipeline = self.pipeline
        parts.supervisor.pipeline = parts.drain.pipeline = self.pipeline
        parts.reporter.sink_description = self.sink_description

    def start_loop(self) -> None:
        parts = self._parts
        loop = self._loop = quiet_new_event_loop()
        limits = ConnectionLimits.from_config(parts.config)
        server = self._server = ConnectionServer(loop, limits, parts.config.max_frame_bytes, parts.sessions)
        parts.sessions.server = parts.drain.server = server
        worker = IngestWorker(parts.sessions.handle_job, parts.config.ingest_shed_after_millis / 1000.0)
        self._worker = parts.sessions.worker = parts.drain.worker = worker
        ready = threading.Event()

        def run() -> None:
            server.loop_ident = threading.get_ident()
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop_thread = threading.Thread(target=run, name="otel-plugin-logs-host", daemon=True)
        self._loop_thread.start()
        ready.wait()
        asyncio.run_coroutine_threadsafe(self._start_server(server), loop).result(timeout=10)

    async def _start_server(self, server: ConnectionServer) -> None:
        path = self._parts.runtime.socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server.listen(path)
        server.loop.call_later(ACK_INTERVAL_SECONDS, self._tick)
        server.loop.call_later(self._parts.reporter.interval_seconds, self._tick_reports)

    # --- periodic work (loop thread) --------------------------------------------------------

    def _tick(self) -> None:
        """Every ack interval: send acks, save the registry, expire connections, warn of late runners."""
        try:
            self._send_acks()
            self._parts.runtime.save()
            if self._server is not None:
                self._server.expire()
            self._parts.supervisor.check_connected()
        finally:
            self._again(ACK_INTERVAL_SECONDS, self._tick)

    def _tick_reports(self) -> None:
        try:
            self._parts.reporter.report(final=False)
        finally:
            self._again(self._parts.reporter.interval_seconds, self._tick_reports)

    def _again(self, delay_seconds: float, step: Callable[[], None]) -> None:
        if self._loop is not None and not self._parts.inputs_closed.is_set():
            self._loop.call_later(delay_seconds, step)

    def _send_acks(self) -> None:
        with self._parts.lock:
            due = self._parts.ledger.acks_due()
        for stream, seq in due:
            conn = stream.conn
            if conn is not None:
                conn.send(messages.ack(seq))

    # --- stopping -------------------------------------------------------------------------------

    def close_inputs(self, deadline: float) -> None:
        """Stop listening, close every connection, and take in what they had sent."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.close(), loop).result(
                    timeout=max(0.1, deadline - time.monotonic())
                )
        if self._worker is not None:
            # What the closed connections sent is taken in before the exporter's last round.
            self._worker.stop(time.monotonic() + (deadline - time.monotonic()) / 2)

    def stop_export(self, deadline: float) -> int:
        """The exporter's last round; returns how many records it had to leave."""
        if self.pipeline is not None:
            return self.pipeline.shutdown(deadline)
        if self.sink is not None:
            self.sink.shutdown()
        return 0

    def stop_loop(self, deadline: float) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(max(0.1, deadline - time.monotonic()))  # stopping: quick
        with contextlib.suppress(Exception):
            loop.close()
