"""``HostLogBridge``: receives, validates, replays and exports the records of plugin runners.

The facade over the flow: ``server`` (sockets) drives ``connection`` (the protocol, sans-IO);
``intake`` checks identities (``auth``) and takes batches into the ``ledger`` and the export
pipeline; ``supervisor`` runs spawned runners; ``reports`` speaks for the bridge; ``registry``
keeps the ledger across host restarts.

Threads: one asyncio loop (the Unix-socket server and the periodic acks/reports), one ingest
worker, one export worker, and one stderr reader per spawned runner. State shared between
them lives in the ledger under ``self._lock``, touched only for short, I/O-free updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, Final

from pydantic import ValidationError

from otel_plugin_logs.config.settings import (
    ENV_PLUGIN_NAME,
    ENV_SOCKET,
    ENV_TOKEN,
    PREFIX,
    ConfigError,
    HostConfig,
    Resolved,
    RunnerConfig,
    check_runtime_dir,
    resolve,
)
from otel_plugin_logs.conventions import (
    check_plugin_name,
)
from otel_plugin_logs.export.pipeline import (
    ExportPipeline,
    ExportSettings,
    NullSink,
    Sink,
    attribute_limits,
    build_sink,
    check_file_dir,
    resolve_export,
)
from otel_plugin_logs.host import auth
from otel_plugin_logs.host.drain import Drain
from otel_plugin_logs.host.entries import Limits
from otel_plugin_logs.host.guards import guard_otel_handlers, quiet_new_event_loop
from otel_plugin_logs.host.ingest import IngestWorker
from otel_plugin_logs.host.intake import Intake
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.legacy import LegacyBatchResult, LegacyIngest
from otel_plugin_logs.host.limits import ConnectionLimits
from otel_plugin_logs.host.process import PluginProcess, stop_processes
from otel_plugin_logs.host.replay import escape_controls
from otel_plugin_logs.host.reports import Reporter, ReportHook, bridge_stats
from otel_plugin_logs.host.resources import PluginResources
from otel_plugin_logs.host.runtime import RuntimeDir
from otel_plugin_logs.host.server import ConnectionServer
from otel_plugin_logs.host.sessions import Sessions
from otel_plugin_logs.host.stats import BridgeStats
from otel_plugin_logs.host.streams import Registration, Stream
from otel_plugin_logs.host.supervisor import SpawnRequest, Supervisor, child_env, start_process
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import ProtocolError, decode_message
from otel_plugin_logs.wire.messages import BATCH, BYE
from otel_plugin_logs.wire.validate import BatchHeader, first_error

_log = logging.getLogger("otel_plugin_logs.bridge")

_ACK_INTERVAL_SECONDS: Final = 0.05
_POLL_SECONDS: Final = 0.005


class HostState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"  # shutdown() is under way
    CLOSED = "closed"  # shut down, or never started: start() refuses


class HostLogBridge:
    """Receives plugin logs, replays them into the host's logging and exports them via OTLP.

    Use as a context manager, or ``start()`` then ``shutdown(timeout_millis)``. Settings come
    from keyword arguments (``HostConfig`` field names), then ``OTEL_PLUGIN_LOGS_*`` and the
    standard ``OTEL_*`` variables, then defaults. ``sink`` replaces the configured exporter
    (for tests, or a custom destination); ``on_report`` is called after each drop report.
    """

    def __init__(
        self,
        *,
        service_name: str | None = None,
        otlp_endpoint: str | None = None,
        otlp_protocol: str | None = None,
        sink: Sink | None = None,
        dedupe_otel_handlers: bool = True,
        environ: Mapping[str, str] | None = None,
        on_report: ReportHook | None = None,
        **settings: Any,
    ) -> None:
        env = os.environ if environ is None else environ
        self.config, self.config_sources = resolve(HostConfig, settings, env)
        # Runners inherit this environment: a bad runner setting fails here, named, rather
        # than as a warning in each plugin's stderr.
        resolve(RunnerConfig, {}, env)
        self.export_settings: ExportSettings = resolve_export(
            self.config, env, endpoint=otlp_endpoint, protocol=otlp_protocol
        )
        # Checked before anything is created: a bad directory fails here, named, leaving nothing.
        if self.config.runtime_dir:
            check_runtime_dir(self.config.runtime_dir)
        if self.export_settings.exporter == "file" and sink is None:
            check_file_dir(self.config.file_dir, PREFIX + "FILE_DIR")
        self._environ = env
        self._service_name = service_name
        self._sink_override = sink
        self._dedupe = dedupe_otel_handlers
        self.state = HostState.NEW
        self._state_lock = threading.Lock()
        self._inputs_closed = threading.Event()  # spawned runners stopped: nothing new is taken
        self._lock = threading.RLock()
        self._ledger = Ledger(
            self.config, on_retired=self._mark_retired, take_unsent_at_exit=self._take_unsent
        )
        self._runtime = RuntimeDir(self.config.runtime_dir, self._lock, self._ledger)
        self._resources = PluginResources()
        self._reporter = Reporter(self.config, self._lock, self._ledger, on_report=on_report)
        self._intake = self._make_intake(env)
        self._sessions = Sessions(
            self.config, self._lock, self._ledger, self._reporter, self._intake, self._resources.for_process
        )
        self._supervisor = Supervisor(self.config, self._lock, self._ledger, self._reporter)
        self._drain = Drain(self._lock, self._ledger, self.config.shutdown_timeout_millis / 1000.0)
        self._supervisor.stopped = self._drain.stopped = self._inputs_closed.is_set
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server: ConnectionServer | None = None
        self._worker: IngestWorker[Any] | None = None
        self._pipeline: ExportPipeline | None = None
        self._sink: Sink | None = None
        self._legacy = LegacyIngest(self.handle_batch, self._count_rpc_bad_input, self.config.max_frame_bytes)

    def _make_intake(self, env: Mapping[str, str]) -> Intake:
        count_limit, length_limit = attribute_limits(env)
        limits = Limits(
            self.config.max_body_bytes,
            min(self.config.max_attribute_length, length_limit or self.config.max_attribute_length),
            count_limit,
        )
        return Intake(
            self.config,
            self._lock,
            self._ledger,
            self._reporter,
            limits,
            make_resource=self._resources.for_process,
            save_registry=self._runtime.save,
            write_ahead=not self._runtime.owned,
        )

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return self._runtime.socket_path

    @property
    def runtime_dir(self) -> str:
        return self._runtime.path

    @property
    def sink_description(self) -> str:
        return self._sink.description if self._sink is not None else ""

    @property
    def config_resolution(self) -> Resolved:
        return self.config_sources

    def start(self) -> HostLogBridge:
        """Start the server, the workers and the loop thread. Idempotent while running.

        Raises ``RuntimeError`` once the bridge was shut down: make a new one.
        """
        with self._state_lock:
            if self.state is HostState.CLOSED:
                raise RuntimeError("this HostLogBridge was shut down; create a new one to start again")
            if self.state is not HostState.NEW:
                return self
            self.state = HostState.RUNNING
        try:
            self._resources.detect(self._environ, self._service_name)
            for note in self.export_settings.notes:
                if "OTEL_CONFIG_FILE" in note:
                    _log.warning("%s", note)
            self._runtime.prepare()
            self._open_sink()
            if self._dedupe:
                guard_otel_handlers(self.config.replay_logger_prefix)
            self._start_loop()
        except BaseException:
            self.state = HostState.CLOSED  # nothing half-started is left to shut down
            raise
        return self

    def __enter__(self) -> HostLogBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _open_sink(self) -> None:
        try:
            self._sink = self._sink_override or build_sink(self.export_settings, self.config)
        except OSError as error:
            self._runtime.clean_up()
            where = self.export_settings.file_path or self.export_settings.destination()
            raise ConfigError(f"cannot open the export sink {where}: {error}") from None
        if not isinstance(self._sink, NullSink):
            mark = None if self._runtime.owned else self._intake.mark_in_doubt
            self._pipeline = ExportPipeline(self._sink, self.config, self._intake.settle, mark)
        pipeline = self._pipeline
        self._intake.pipeline = self._reporter.pipeline = self._supervisor.pipeline = self._drain.pipeline = (
            pipeline
        )
        self._reporter.sink_description = self.sink_description

    def _start_loop(self) -> None:
        loop = quiet_new_event_loop()
        self._loop = loop
        server = self._server = ConnectionServer(
            loop, ConnectionLimits.from_config(self.config), self.config.max_frame_bytes, self._sessions
        )
        self._sessions.server = self._drain.server = server
        self._worker = self._sessions.worker = self._drain.worker = IngestWorker(
            self._sessions.handle_job, self.config.ingest_shed_after_millis / 1000.0
        )
        ready = threading.Event()

        def run() -> None:
            server.loop_ident = threading.get_ident()
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop_thread = threading.Thread(target=run, name="otel-plugin-logs-host", daemon=True)
        self._loop_thread.start()
        ready.wait()
        asyncio.run_coroutine_threadsafe(self._start_server(), loop).result(timeout=10)

    async def _start_server(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        assert self._server is not None
        assert self._loop is not None
        self._server.listen(self.socket_path)
        self._loop.call_later(_ACK_INTERVAL_SECONDS, self._tick)
        self._loop.call_later(self._reporter.interval_seconds, self._tick_reports)

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Flush runners, then the exporter, within one deadline; count what is left.

        Idempotent; before ``start()`` it only closes the bridge. Returns True when nothing
        had to be dropped at shutdown. Spawned runners that still run are stopped first:
        SIGTERM, the kill timeout, SIGKILL (README, "Supervision").
        """
        with self._state_lock:
            if self.state is not HostState.RUNNING:
                self.state = HostState.CLOSED if self.state is HostState.NEW else self.state
                return True
            self.state = HostState.STOPPING
        timeout = self.config.shutdown_timeout_millis if timeout_millis is None else timeout_millis
        deadline = time.monotonic() + timeout / 1000.0
        try:
            return self._stop(deadline)
        finally:
            self.state = HostState.CLOSED

    def _stop(self, deadline: float) -> bool:
        spawned = self._supervisor.running()
        # Spawned runners send what they hold before they are told to stop (a plugin that dies
        # of SIGTERM sends nothing more); what they log while stopping still comes in.
        self._drain.flush_runners(time.monotonic() + (deadline - time.monotonic()) / 2)
        if spawned:
            self._stop_spawned(spawned, deadline)
        self._inputs_closed.set()
        self._close_inputs(deadline)
        # Nothing arrives any more: the last gaps and drops are known now, and their notices
        # go into the export queue ahead of its shutdown, so they are exported like the rest.
        with self._lock:
            self._ledger.finalize()
        self._reporter.report(final=True)
        left = 0
        if self._pipeline is not None:
            left = self._pipeline.shutdown(deadline)
        elif self._sink is not None:
            self._sink.shutdown()
        self._reporter.report(final=True)  # what the export queue had to drop: logged, nowhere left to export
        self._runtime.save()
        self._stop_loop(deadline)
        for process in self._supervisor.every():
            process.exited.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        self._runtime.clean_up()
        return left == 0

    def _close_inputs(self, deadline: float) -> None:
        loop, server = self._loop, self._server
        assert loop is not None
        assert server is not None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(
                timeout=max(0.1, deadline - time.monotonic())
            )
        if self._worker is not None:
            # What the closed connections sent is taken in before the exporter's last round.
            self._worker.stop(time.monotonic() + (deadline - time.monotonic()) / 2)

    def _stop_loop(self, deadline: float) -> None:
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(max(0.1, deadline - time.monotonic()))  # stopping: quick
        with contextlib.suppress(Exception):
            loop.close()

    def _stop_spawned(self, spawned: Sequence[PluginProcess], deadline: float) -> None:
        """SIGTERM the spawned runners that still run, wait, SIGKILL the rest; within ``deadline``."""
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in spawned)
        _log.info("stopping plugins that still run: %s", names)
        grace = min(self.config.kill_timeout_millis / 1000.0, (deadline - time.monotonic()) / 2)
        grace_deadline = time.monotonic() + max(0.0, grace)
        # SIGKILL cannot be ignored: the extra moment is only the kernel's, to end them.
        killed = stop_processes(spawned, grace_deadline, max(deadline, time.monotonic() + 0.2))
        if killed:
            _log.warning("plugins did not stop after SIGTERM; killed them (SIGKILL): %s", ", ".join(killed))
        for name in sorted({p.name for p in spawned}):
            self.wait_for_plugin(name, max(0.0, (deadline - time.monotonic()) / 4))

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Ask live runners to send what they hold, then export everything received."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        runners_ok = self._drain.flush_runners(time.monotonic() + timeout_millis / 2000.0)
        exported_ok = True
        if self._pipeline is not None:
            exported_ok = self._pipeline.force_flush(max(0.0, deadline - time.monotonic()))
        return runners_ok and exported_ok

    # --- plugins and runners ---------------------------------------------------------------

    def _check_running(self, what: str) -> None:
        if self.state not in (HostState.RUNNING, HostState.STOPPING):
            raise RuntimeError(f"start the bridge before {what}")

    def register_runner(
        self, plugin: str, *, version: str | None = None, pid: int | None = None
    ) -> dict[str, str]:
        """Issue a token for one runner of ``plugin``; returns the environment it needs.

        For a host that starts runners itself: pass the returned variables to the process.
        The runner's records are bound to ``plugin``, whatever they claim.
        """
        try:
            check_plugin_name(plugin)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self._check_running("registering runners")
        issued = auth.issue_token()
        with self._lock:
            self._ledger.register(Registration(plugin, version, issued.digest, pid, issued.token))
        if pid is not None:
            self._runtime.save()
        return {ENV_SOCKET: self.socket_path, ENV_TOKEN: issued.token, ENV_PLUGIN_NAME: plugin}

    def release_runner(self, token: str) -> bool:
        """Tell the bridge that a runner registered with ``register_runner`` has ended.

        The bridge watches the runners it spawns itself; for the others, call this once the
        process is gone. Its token stops working, what it announced but never sent counts as
        ``gap``, and nothing of it is kept once its records are settled. Returns False for a
        token the bridge does not know (or already released).
        """
        digest = auth.token_digest(token)
        with self._lock:
            registration = self._ledger.registrations.get(digest)
            if registration is None or registration.ended:
                return False
            self._ledger.end_registration(digest)
            for stream in self._ledger.streams_of(digest):
                if stream.conn is None and not stream.finished:
                    self._ledger.finish(stream)
            self._ledger.release_registration(digest)
        self._runtime.save()
        return True

    def spawn_plugin(
        self,
        name: str,
        argv: Sequence[str],
        *,
        version: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        auto_install: bool = True,
        capture_stdout: bool = False,
        new_process_group: bool = True,
        die_with_parent: bool = False,
    ) -> PluginProcess:
        """Start a runner subprocess whose logs come to this bridge.

        Python runners get the handler installed automatically (a ``sitecustomize`` on their
        ``PYTHONPATH``); any runner's stderr is replayed on ``<prefix>.<name>.stderr`` (a
        printed traceback as one record). ``capture_stdout`` replays its stdout the same way
        on ``<prefix>.<name>.stdout`` (off: a host may use the child's stdout for its own RPC).
        The runner gets its own process group unless ``new_process_group`` is False;
        ``die_with_parent`` makes Linux kill it when the calling thread ends. ``shutdown``
        stops every spawned runner that still runs (README, "Supervision").
        """
        if capture_stdout and stdout is not None:
            raise ValueError("spawn_plugin: give either stdout or capture_stdout=True, not both")
        if env is not None:
            resolve(RunnerConfig, {}, env)  # the runner's own settings, checked before it starts
        runner_env = self.register_runner(name, version=version)
        digest = auth.token_digest(runner_env[ENV_TOKEN])
        base_env = os.environ if env is None else env
        request = SpawnRequest(
            name,
            argv,
            child_env(self.config, self._resources.host_service, name, base_env, runner_env, auto_install),
            cwd,
            stdin,
            stdout,
            capture_stdout,
            new_process_group,
            die_with_parent,
        )
        with self._lock:  # the child cannot be authenticated before its pid is recorded
            popen = start_process(request)
            registration = self._ledger.registrations[digest]
            registration.pid = popen.pid
            registration.token = None
            plugin = self._ledger.plugin(name, version)
            registration.resource = plugin.last_resource = self._resources.for_process(plugin, popen.pid)
            self._ledger.dirty = True
        # Written before the runner can connect: a host killed a moment later still knows it.
        self._runtime.save()
        process = PluginProcess(
            name, popen, digest, own_group=new_process_group, settle=self._drain.settle_process
        )
        self._supervisor.watch(process, capture_stdout)
        if auto_install:
            process.connect_deadline = time.monotonic() + self.config.connect_timeout_millis / 1000.0
        return process

    # --- the host's own RPC ----------------------------------------------------------------------

    def handle_batch(self, plugin: str, payload: bytes | Mapping[str, Any], *, pid: int | None = None) -> int:
        """Take a batch that arrived over the host's own RPC; returns the settled sequence number.

        ``payload`` is a batch frame body (msgpack bytes, as a runner's ``Transport`` sends it)
        or its decoded map. ``plugin`` is who the host knows sent it; it is not read from the
        payload. Raises ``ProtocolError`` for a malformed payload (nothing else is affected).
        """
        self._check_running("handing it batches")
        message = (
            decode_message(payload, self.config.max_frame_bytes)
            if isinstance(payload, bytes)
            else dict(payload)
        )
        try:
            header = BatchHeader.model_validate(message)
        except ValidationError as error:
            raise ProtocolError("malformed_batch", first_error(error)) from None
        if header.t not in (BATCH, BYE):
            raise ProtocolError("unexpected_frame", f"expected a batch, got {header.t[:32]!r}")
        return self._intake.take_rpc_batch(plugin, header, pid or 0)

    def handle_legacy_batch(
        self,
        plugin: str,
        payload: bytes | str | Mapping[str, Any],
        *,
        pid: int | None = None,
        final: bool = False,
    ) -> LegacyBatchResult:
        """Take a seed-style ``{"entries": [...]}`` payload from a runner on the old handler.

        ``payload`` is the decoded map, or its JSON or msgpack bytes; ``plugin`` is who the
        host knows sent it. Its entries are replayed, exported and counted like any record;
        ``final=True`` says the runner ended (its stream is released). Raises
        ``ProtocolError`` for a payload that is not such a batch, counted in ``bad_input``
        like a bad frame; invalid entries are refused one by one, counted as ``invalid_entry``.
        """
        self._check_running("handing it batches")
        return self._legacy.take(plugin, payload, pid, final)

    def _count_rpc_bad_input(self, plugin: str, reason: str, count: int, detail: str) -> None:
        with self._lock:
            self._ledger.plugin(plugin).counters.bad_input[reason] += count
        self._reporter.warn_once(
            plugin,
            reason,
            "refused input of plugin %s from the host's RPC: %s: %s",
            plugin,
            reason,
            escape_controls(detail[:300]),
        )

    # --- periodic work (loop thread) --------------------------------------------------------

    def _tick(self) -> None:
        """Every ack interval: send acks, save the registry, expire connections, warn of late runners."""
        try:
            self._send_acks()
            self._runtime.save()
            if self._server is not None:
                self._server.expire()
            self._supervisor.check_connected()
        finally:
            self._again(_ACK_INTERVAL_SECONDS, self._tick)

    def _tick_reports(self) -> None:
        try:
            self._reporter.report(final=False)
        finally:
            self._again(self._reporter.interval_seconds, self._tick_reports)

    def _again(self, delay_seconds: float, step: Any) -> None:
        loop = self._loop
        if loop is not None and not self._inputs_closed.is_set():
            loop.call_later(delay_seconds, step)

    def _send_acks(self) -> None:
        with self._lock:
            due = self._ledger.acks_due()
        for stream, seq in due:
            conn = stream.conn
            if conn is not None:
                conn.send(messages.ack(seq))

    # --- the runtime dir's exit counters (ledger hooks) -----------------------------------------

    def _mark_retired(self, stream: Stream) -> None:
        self._runtime.mark_retired(stream)

    def _take_unsent(self, digest: str) -> int:
        return self._runtime.take_unsent(digest)

    # --- introspection ----------------------------------------------------------------------------

    def stats(self) -> BridgeStats:
        """A consistent snapshot of every counter."""
        with self._lock:
            return bridge_stats(self._ledger, self._pipeline, self.sink_description, self._sessions.rejected)

    def wait_for_plugin(self, name: str, timeout_seconds: float) -> bool:
        """Wait until every connection of ``name`` is closed and all it sent was taken in.

        Call it after the plugin's processes exited: a connection still in the accept backlog
        or in its handshake may be theirs, so those are waited for too.
        """
        return self._drain.wait_for_plugin(name, timeout_seconds)


__all__ = ["HostLogBridge", "HostState", "PluginProcess"]
