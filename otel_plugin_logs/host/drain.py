"""Waiting for what runners sent: flush requests, quiescence, a plugin's or a process's settling.

A runner that connected and exited quickly may still sit in the listen backlog or have an
unread hello: its records are not known to the ledger yet, but they are coming. Everything
here polls with a short sleep, within the caller's deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.host.ingest import IngestWorker
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.process import PluginProcess
from otel_plugin_logs.host.server import ConnectionServer
from otel_plugin_logs.host.streams import Stream

POLL_SECONDS: Final = 0.005
_FLUSH_POLL_SECONDS: Final = 0.01


class Drain:
    def __init__(self, lock: threading.RLock, ledger: Ledger, default_timeout_seconds: float) -> None:
        self._lock = lock
        self._ledger = ledger
        self._default_timeout_seconds = default_timeout_seconds
        self._flush_id = 0
        self.server: ConnectionServer | None = None  # set once the bridge has started
        self.worker: IngestWorker[Any] | None = None
        self.pipeline: ExportPipeline | None = None
        self.stopped: Callable[[], bool] = lambda: False

    def quiescent(self) -> bool:
        """No connection waits to be accepted or to finish its handshake, no frame to be taken in."""
        server = self.server
        if server is None:
            return True
        if server.handshaking():
            return False
        if self.worker is not None and not self.worker.idle():
            return False
        return server.backlog_empty()

    def flush_runners(self, deadline: float) -> bool:
        """Ask every live runner to send what it holds; True once each echoed the request."""
        server = self.server
        if server is None or server.loop.is_closed():
            return True
        while not self.quiescent() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        with self._lock:
            self._flush_id += 1
            flush_id = self._flush_id
        live = server.live()
        for conn in live:
            server.loop.call_soon_threadsafe(conn.write, conn.machine.flush(flush_id))
        while time.monotonic() < deadline:
            with self._lock:
                waiting = [
                    c for c in live if not c.closed and c.stream is not None and c.stream.flushed < flush_id
                ]
            if not waiting:
                return True
            time.sleep(_FLUSH_POLL_SECONDS)
        return False

    def _wait_streams(self, streams: Callable[[], list[Stream]], deadline: float) -> bool:
        while True:
            with self._lock:
                busy = any(s.conn is not None and not s.closed for s in streams())
            if not busy and self.quiescent():
                return True
            if time.monotonic() >= deadline or self.stopped():
                return False
            time.sleep(POLL_SECONDS)

    def wait_for_plugin(self, name: str, timeout_seconds: float) -> bool:
        """Every connection of ``name`` is closed and all it sent was taken in."""

        def streams() -> list[Stream]:
            plugin = self._ledger.plugins.get(name)
            return list(plugin.streams.values()) if plugin is not None else []

        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(s.conn is not None and not s.closed for s in streams())
            if not busy and self.quiescent():
                return True
            time.sleep(POLL_SECONDS)
        return False

    def settle_process(self, process: PluginProcess, deadline: float | None) -> bool:
        """After its exit: wait until what ``process`` sent was taken in and exported or dropped."""
        if deadline is None:
            deadline = time.monotonic() + self._default_timeout_seconds
        if not self._wait_streams(lambda: self._ledger.streams_of(process.digest), deadline):
            return False
        pipeline = self.pipeline
        while pipeline is not None and not self.stopped():
            if pipeline.force_flush(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
            # A failing exporter is not waited for: its records stay pending, counted as such.
            if pipeline.failing_since is not None or time.monotonic() >= deadline:
                return False
        return True
