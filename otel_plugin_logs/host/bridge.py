"""``HostLogBridge``: receives, validates, replays and exports the records of plugin runners.

The facade over the flow: ``server`` (sockets) drives ``connection`` (the protocol, sans-IO);
``sessions`` check identities (``auth``) and hand batches to ``intake``, which counts them in
the ``ledger`` and offers them to the export pipeline; ``supervisor`` runs spawned runners;
``reports`` speaks for the bridge; ``runtime`` keeps the ledger across host restarts;
``engine`` wires the parts and runs the loop thread.

Threads: one asyncio loop (the Unix-socket server and the periodic acks/reports), one ingest
worker, one export worker, and one stderr reader per spawned runner. State shared between
them lives in the ledger under one lock, touched only for short, I/O-free updates.
"""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from pydantic import ValidationError

from otel_plugin_logs.config.checks import check_runtime_dir
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import PREFIX, Resolved, resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import ENV_PLUGIN_NAME, ENV_SOCKET, ENV_TOKEN, RunnerConfig
from otel_plugin_logs.config.text import escape_controls
from otel_plugin_logs.conventions import check_plugin_name
from otel_plugin_logs.export.file_sink import check_file_dir
from otel_plugin_logs.export.settings import ExportSettings, resolve_export
from otel_plugin_logs.export.sinks import Sink
from otel_plugin_logs.host import auth
from otel_plugin_logs.host.engine import HostEngine, make_parts
from otel_plugin_logs.host.guards import guard_otel_handlers
from otel_plugin_logs.host.legacy import LegacyBatchResult, LegacyIngest
from otel_plugin_logs.host.process import PluginProcess
from otel_plugin_logs.host.reports import ReportHook, bridge_stats
from otel_plugin_logs.host.stats import BridgeStats
from otel_plugin_logs.host.streams import Registration
from otel_plugin_logs.host.supervisor import SpawnHooks, SpawnRequest, child_env
from otel_plugin_logs.wire.exit_counter import token_digest
from otel_plugin_logs.wire.framing import ProtocolError, decode_message
from otel_plugin_logs.wire.messages import BATCH, BYE
from otel_plugin_logs.wire.validate import BatchHeader, first_error

_log = logging.getLogger("otel_plugin_logs.bridge")


class HostState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"  # shutdown() is under way
    CLOSED = "closed"  # shut down, or never started: start() refuses


class HostLogBridge:
    """Receives plugin logs, replays them into the host's logging and exports them via OTLP.

    Use as a context manager, or ``start()`` then ``shutdown(timeout_millis)``. Settings come
    from keyword arguments (``HostConfig`` field names), then ``OTEL_PLUGIN_LOGS_*`` and the
    standard ``OTEL_*`` variables, then defaults. ``sink`` replaces the configured exporter:
    any ``otel_plugin_logs.Sink`` (it gets ``Item``s, returns an ``Outcome``), for a custom
    destination, or ``otel_plugin_logs.testing.MemorySink`` in tests. ``on_report`` is called
    after each drop report.
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
        self._parts = parts = make_parts(self.config, env, on_report)
        self._lock = parts.lock
        self._ledger = parts.ledger
        self._runtime = parts.runtime
        self._engine = HostEngine(parts)
        self._legacy = LegacyIngest(self._take_batch, self._count_rpc_bad_input, self.config.max_frame_bytes)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return self._runtime.socket_path

    @property
    def runtime_dir(self) -> str:
        return self._runtime.path

    @property
    def sink_description(self) -> str:
        return self._engine.sink_description

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
            self._parts.resources.detect(self._environ, self._service_name)
            for note in self.export_settings.notes:
                if "OTEL_CONFIG_FILE" in note:
                    _log.warning("%s", note)
            self._runtime.prepare()
            self._engine.open_sink(self.export_settings, self._sink_override)
            if self._dedupe:
                guard_otel_handlers(self.config.replay_logger_prefix)
            self._engine.start_loop()
        except BaseException:
            self.state = HostState.CLOSED  # nothing half-started is left to shut down
            raise
        return self

    def __enter__(self) -> HostLogBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

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
        parts, engine = self._parts, self._engine
        spawned = parts.supervisor.running()
        # Spawned runners send what they hold before they are told to stop (a plugin that dies
        # of SIGTERM sends nothing more); what they log while stopping still comes in.
        parts.drain.flush_runners(time.monotonic() + (deadline - time.monotonic()) / 2)
        if spawned:
            parts.supervisor.stop(spawned, deadline, self.wait_for_plugin)
        # Their exits are counted (and a failed one's notice queued) before the export's last round.
        for process in parts.supervisor.every():
            process.exited.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        parts.inputs_closed.set()
        engine.close_inputs(deadline)
        # Nothing arrives any more: the last gaps and drops are known now, and their notices
        # go into the export queue ahead of its shutdown, so they are exported like the rest.
        with self._lock:
            self._ledger.finalize()
        parts.reporter.report(final=True)
        left = engine.stop_export(deadline)
        parts.reporter.report(final=True)  # what the export queue had to drop: logged, nowhere left to export
        self._runtime.save()
        engine.stop_loop(deadline)
        self._runtime.clean_up()
        return left == 0

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Ask live runners to send what they hold, then export everything received."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        runners_ok = self._parts.drain.flush_runners(time.monotonic() + timeout_millis / 2000.0)
        exported_ok = True
        pipeline = self._engine.pipeline
        if pipeline is not None:
            exported_ok = pipeline.force_flush(max(0.0, deadline - time.monotonic()))
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
        digest = token_digest(token)
        with self._lock:
            released = self._ledger.release(digest)
        if released:
            self._runtime.save()
        return released

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
        base_env = os.environ if env is None else env
        host_service = self._parts.resources.host_service
        request = SpawnRequest(
            name,
            argv,
            child_env(self.config, host_service, name, base_env, runner_env, auto_install),
            cwd,
            stdin,
            stdout,
            capture_stdout,
            new_process_group,
            die_with_parent,
        )
        hooks = SpawnHooks(
            self._parts.resources.for_process,
            self._runtime.save,
            self._parts.drain.settle_process,
            self.config.connect_timeout_millis / 1000.0 if auto_install else None,
        )
        digest = token_digest(runner_env[ENV_TOKEN])
        return self._parts.supervisor.spawn(request, digest, version, hooks)

    # --- the host's own RPC ----------------------------------------------------------------------

    def handle_batch(self, plugin: str, payload: bytes | Mapping[str, Any], *, pid: int | None = None) -> int:
        """Take a batch that arrived over the host's own RPC; returns the settled sequence number.

        ``payload`` is a batch frame body (msgpack bytes, as a runner's ``Transport`` sends it)
        or its decoded map. ``plugin`` is who the host knows sent it; it is not read from the
        payload. Raises ``ProtocolError`` for a malformed payload (nothing else is affected),
        counted in the plugin's ``bad_input`` like a bad frame on a socket.
        """
        self._check_running("handing it batches")
        try:
            return self._take_batch(plugin, payload, pid)
        except ProtocolError as error:
            self._count_rpc_bad_input(plugin, error.reason, 1, error.detail)
            raise

    def _take_batch(self, plugin: str, payload: bytes | Mapping[str, Any], pid: int | None) -> int:
        """``handle_batch`` without counting a refusal (the legacy path counts its own)."""
        header = rpc_batch_header(payload, self.config.max_frame_bytes)
        return self._parts.intake.take_rpc_batch(plugin, header, pid or 0)

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
        self._parts.reporter.warn_once(
            plugin,
            reason,
            "refused input of plugin %s from the host's RPC: %s: %s",
            plugin,
            reason,
            escape_controls(detail[:300]),
        )

    # --- introspection ----------------------------------------------------------------------------

    def stats(self) -> BridgeStats:
        """A consistent snapshot of every counter."""
        pipeline = self._engine.pipeline
        depth = pipeline.depth() if pipeline is not None else (0, 0)  # outside the ledger's lock
        with self._lock:
            rejected = self._parts.sessions.rejected
            return bridge_stats(self._ledger, pipeline, depth, self.sink_description, rejected)

    def wait_for_plugin(self, name: str, timeout_seconds: float) -> bool:
        """Wait until every connection of ``name`` is closed and all it sent was taken in.

        Call it after the plugin's processes exited: a connection still in the accept backlog
        or in its handshake may be theirs, so those are waited for too.
        """
        return self._parts.drain.wait_for_plugin(name, timeout_seconds)


def rpc_batch_header(payload: bytes | Mapping[str, Any], max_frame_bytes: int) -> BatchHeader:
    """The batch a runtime's own RPC handed over, validated; ``ProtocolError`` if it is not one."""
    message = decode_message(payload, max_frame_bytes) if isinstance(payload, bytes) else dict(payload)
    try:
        header = BatchHeader.model_validate(message)
    except ValidationError as error:
        raise ProtocolError("malformed_batch", first_error(error)) from None
    if header.t not in (BATCH, BYE):
        raise ProtocolError("unexpected_frame", f"expected a batch, got {header.t[:32]!r}")
    return header


__all__ = ["HostLogBridge", "HostState", "PluginProcess"]
