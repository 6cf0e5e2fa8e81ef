"""Runner sessions: the hello's identity check, and each connection's frames to the ingest worker.

The server's ``ConnectionHandler``. Hellos are answered on the loop thread; every later
frame of a connection is handled by the ingest worker, in arrival order, and its batches
go to the intake.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.text import escape_controls
from otel_plugin_logs.host import auth
from otel_plugin_logs.host.connection import (
    BatchReceived,
    ByeReceived,
    HelloReceived,
    HelloRefused,
    ProtocolViolation,
)
from otel_plugin_logs.host.ingest import IngestWorker, Job
from otel_plugin_logs.host.intake import Intake, ResourceMaker
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.limits import ACCEPT_ERROR, Frame
from otel_plugin_logs.host.reports import Reporter
from otel_plugin_logs.host.server import ConnectionServer, SocketDriver
from otel_plugin_logs.host.streams import StreamKey
from otel_plugin_logs.wire.exit_counter import token_digest

_log = logging.getLogger("otel_plugin_logs.bridge")


class Sessions:
    """What runner connections mean to the host: identities checked, streams bound, frames taken in."""

    def __init__(
        self,
        config: HostConfig,
        lock: threading.RLock,
        ledger: Ledger,
        reporter: Reporter,
        intake: Intake,
        make_resource: ResourceMaker,
    ) -> None:
        self._config = config
        self._lock = lock
        self._ledger = ledger
        self._reporter = reporter
        self._intake = intake
        self._make_resource = make_resource
        self.rejected: Counter[str] = Counter()  # connections refused before they became runners
        self.accept_errors = 0
        self.server: ConnectionServer | None = None  # set once the bridge has started
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
        digest = token_digest(hello.token)
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
                self._intake.ingest(driver.stream, event.header, event.frame_bytes, shed)
            elif isinstance(event, ProtocolViolation):
                self.bad_input(driver, event.reason, event.detail)
        except Exception as error:  # a bug of ours must not take the host down with it
            # What the connection sent after this frame is not taken in either.
            refused = driver.machine.violation("internal_error", f"{type(error).__name__}: {error}")
            self.bad_input(driver, refused.reason, refused.detail)
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
