"""``HostLogBridge``: receives, validates, replays and exports the records of plugin runners.

Threads: one asyncio loop (the Unix-socket server and the periodic acks/reports), one export
worker, and one stderr reader per spawned runner. State shared between them lives under
``self._lock`` and is touched only for short, I/O-free updates; host log handlers (replay)
and the exporter run outside it.

Identity: a plugin's records are bound to the runner that the host spawned with a fresh
token. The token is checked in constant time, the peer's uid and pid come from the kernel
(SO_PEERCRED), and nothing in a payload can change which plugin a record belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Final

from pydantic import ValidationError

from otel_plugin_logs.config.resource import detect_host_resource, with_resource_attributes
from otel_plugin_logs.config.settings import (
    ENV_AUTO_INSTALL,
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
    BRIDGE_COUNT_ATTRIBUTE,
    BRIDGE_EVENT_ATTRIBUTE,
    BRIDGE_REASON_ATTRIBUTE,
    BRIDGE_SCOPE_NAME,
    DEFAULT_HOST_SERVICE_NAME,
    RESOURCE_PLUGIN_NAME,
    RESOURCE_PLUGIN_VERSION,
    check_plugin_name,
    is_valid_plugin_name,
)
from otel_plugin_logs.export.file_sink import check_file_dir
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.pipeline import DROP_EXPORT_QUEUE_FULL, ExportPipeline
from otel_plugin_logs.export.settings import ExportSettings, attribute_limits, build_sink, resolve_export
from otel_plugin_logs.export.sinks import NullSink, Sink
from otel_plugin_logs.host.entries import Limits, build_entry, clean_text, sanitize_counters
from otel_plugin_logs.host.ingest import IngestWorker, Job
from otel_plugin_logs.host.legacy import LegacyBatchResult, LegacyIngest
from otel_plugin_logs.host.limits import (
    ACCEPT_ERROR,
    CLOSED_STALLED,
    EVICTED_PENDING,
    BudgetedFrameReader,
    ConnectionLimits,
    ConnectionTable,
    Frame,
    IngestBudget,
    UnixListener,
    has_spoken,
    peer_credentials,
)
from otel_plugin_logs.host.process import (
    PluginProcess,
    RawText,
    TracebackGrouper,
    die_with_parent_hook,
    pump_output,
    stop_processes,
)
from otel_plugin_logs.host.replay import ReplayedRecordFilter, Replayer, escape_controls
from otel_plugin_logs.host.stats import BridgeStats, PluginCounters, PluginStats
from otel_plugin_logs.wire import exit_counter as _exit_counter
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.framing import ProtocolError, decode_message, encode_message
from otel_plugin_logs.wire.messages import BATCH, BYE, HELLO, PROTOCOL_VERSION
from otel_plugin_logs.wire.records import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    INT64_MAX,
    severity_number,
    truncate_utf8,
)
from otel_plugin_logs.wire.validate import BatchHeader, Hello, first_error, validate_records

_log = logging.getLogger("otel_plugin_logs.bridge")

_ACK_INTERVAL_SECONDS: Final = 0.05
_MAX_STDERR_LINE_BYTES: Final = 64 * 1024
_MAX_TRACEBACK_LINES: Final = 2000  # a longer printed traceback becomes several records
_TRACEBACK_IDLE_SECONDS: Final = 0.5  # a printed traceback with no line for this long is complete
_REGISTRY: Final = "registry.json"
_MAX_RETIRED_RPC_STREAMS: Final = 4096
_PACKAGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A directory put on a runner's PYTHONPATH, not a module the host imports.
_BOOTSTRAP_DIR: Final = os.path.join(_PACKAGE_DIR, "runner", "bootstrap")

# In a spawned runner's environment: what `opentelemetry-instrument` (the SDK's configurator,
# the distro, opentelemetry-instrumentation-logging) reads to export the process's logs
# itself. The bridge already exports them; traces and metrics are left alone.
PLUGIN_OWN_LOG_EXPORT_OFF: Final = {
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false",
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false",
}

# Host-side drop reasons.
DROP_RATE_LIMITED: Final = "rate_limited"
DROP_INVALID: Final = "invalid_record"
DROP_GAP: Final = "gap"
# Accepted by a runner that died before sending them: known from its exit counter.
DROP_UNSENT_AT_EXIT: Final = "unsent_at_exit"
DROP_OVERLOAD: Final = "host_overload"


class _Registration:
    """A runner identity the host issued: a token, for one plugin, for one spawned process."""

    __slots__ = ("connected", "digest", "ended", "pid", "plugin", "resource", "token", "version")

    def __init__(
        self, plugin: str, version: str | None, token: str | None, digest: str, pid: int | None
    ) -> None:
        self.resource: ResourceInfo | None = None  # of the spawned process: its stderr and its stream
        self.plugin = plugin
        self.version = version
        self.token = token  # kept only until the runner is spawned; the registry stores the digest
        self.digest = digest
        self.pid = pid
        self.connected = False
        self.ended = False  # its process is known to be gone: exit seen, or release_runner()


class _Ticket:
    """Records of one runner batch still waiting for the exporter; the batch is acked at zero."""

    __slots__ = ("last_seq", "pending", "stream")

    def __init__(self, stream: _Stream, last_seq: int, pending: int) -> None:
        self.stream = stream
        self.last_seq = last_seq
        self.pending = pending


class _TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self, wanted: int, now: float) -> int:
        if self.rate <= 0:
            return wanted
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        allowed = min(wanted, int(self.tokens))
        self.tokens -= allowed
        return allowed


class _Plugin:
    __slots__ = (
        "byte_limiter",
        "counters",
        "last_resource",
        "limiter",
        "name",
        "pending",
        "replayer",
        "reported",
        "streams",
        "version",
    )

    def __init__(self, name: str, version: str | None, config: HostConfig) -> None:
        self.name = name
        self.version = version
        self.counters = PluginCounters()
        self.replayer = Replayer(config.replay_logger_prefix, name)
        self.limiter = _TokenBucket(config.rate_limit_records_per_second, config.rate_limit_burst_records)
        self.byte_limiter = _TokenBucket(config.rate_limit_bytes_per_second, config.rate_limit_burst_bytes)
        self.streams: dict[tuple[str, int], _Stream] = {}
        self.pending = 0  # records of this plugin in the export queue
        self.reported: Counter[str] = Counter()  # drop totals already reported in a warning
        self.last_resource: ResourceInfo | None = None


class _Stream:
    """The records of one runner process (one handler; a forked child is a new stream)."""

    __slots__ = (
        "accepted",
        "acked",
        "base",
        "base_dropped",
        "closed",
        "conn",
        "exported_high",
        "finished",
        "flushed",
        "gap",
        "high",
        "in_doubt",
        "key",
        "otel",
        "plugin",
        "received",
        "resource",
        "runner_dropped",
        "settled",
        "tickets",
    )

    def __init__(
        self,
        plugin: _Plugin,
        key: tuple[str, int],
        resource: ResourceInfo,
        pid: int,
        base: int,
        base_dropped: dict[str, int] | None = None,
        in_doubt: int = 0,
    ) -> None:
        self.plugin = plugin
        self.key = key
        self.resource = resource
        self.otel: dict[str, Any] = {
            "plugin": plugin.name,
            "plugin_version": plugin.version,
            "runner_pid": pid,
            "resource": resource.attributes,
        }
        self.base = base  # settled by an earlier host instance (after a host restart)
        self.high = base
        self.settled = base
        self.acked = base
        self.accepted = base
        self.received = 0
        self.runner_dropped: dict[str, int] = {}
        self.base_dropped = dict(base_dropped or {})  # runner drops an earlier host instance saw
        # An earlier host instance handed records up to here to its exporter before it died
        # without acknowledging them: resent, they are exported again (at least once).
        self.in_doubt = in_doubt
        self.exported_high = base  # written to the registry before each export
        self.gap = 0
        self.tickets: deque[_Ticket] = deque()
        self.conn: _Connection | None = None
        self.closed = False
        self.finished = False  # its runner is gone for good: released once everything settled
        self.flushed = 0


class _Connection(asyncio.Protocol):
    """One runner connection. Its peer's pid and uid were read from the kernel when accepted."""

    def __init__(self, bridge: HostLogBridge, peer_pid: int | None, peer_uid: int | None) -> None:
        self.bridge = bridge
        self.transport: asyncio.Transport | None = None
        self.reader = BudgetedFrameReader(bridge._ingest_budget, bridge.config.max_frame_bytes)
        self.peer_pid = peer_pid
        self.peer_uid = peer_uid
        self.stream: _Stream | None = None
        self.plugin_name = "?"
        self.closed = False
        self.said_bye = False
        self.input_refused = False  # closed for bad input: frames still queued are ignored
        now = time.monotonic()
        self.last_data = now
        # Checked by the bridge's periodic tick: a timer per connection would outlive it.
        self.handshake_deadline = now + bridge._connection_limits.handshake_timeout_seconds

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.bridge._on_connection_made(self)

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        if self.stream is None:
            self.bridge._connection_table.spoke(self)
        self._handle(self.reader.feed(data))

    def _handle(self, frames: Iterator[Frame]) -> None:
        bridge = self.bridge
        budget = bridge._ingest_budget
        try:
            for frame in frames:
                if self.closed:
                    budget.release(frame.owner, frame.reserved_bytes)
                    return
                if self.stream is not None:  # the worker takes it from here, in arrival order
                    bridge._worker().put(Job(self, frame.body, frame.owner, frame.reserved_bytes))
                    continue
                try:  # the hello: answered here, at once, however busy the worker is
                    bridge._on_message(self, decode_message(frame.body, bridge.config.max_frame_bytes))
                finally:
                    budget.release(frame.owner, frame.reserved_bytes)
        except ProtocolError as error:
            self.bridge._bad_input(self, error.reason, error.detail)
        except Exception as error:  # a bug of ours must not take the host down with it
            self.bridge._bad_input(self, "internal_error", f"{type(error).__name__}: {error}")
            _log.debug("internal error on a runner connection", exc_info=True)
        if self.closed or self.transport is None:
            return
        if self.reader.blocked:
            # Its frame does not fit the ingest budget: leave the rest in the kernel's buffer.
            self.transport.pause_reading()
            self.bridge._ingest_budget.wait(self._wake)
        elif not self.transport.is_reading():
            self.transport.resume_reading()

    def _wake(self) -> None:
        loop = self.bridge._loop
        if loop is not None and not self.closed:
            loop.call_soon(self._resume)

    def _resume(self) -> None:
        if not self.closed:
            self._handle(self.reader.resume())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reader.release()
        self.bridge._ingest_budget.forget(self._wake)
        self.bridge._on_connection_lost(self)

    def send(self, message: Mapping[str, Any]) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(encode_message(message))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        loop = self.bridge._loop
        if transport is None or loop is None:
            return
        if threading.get_ident() == self.bridge._loop_ident:
            transport.close()
        else:  # from the ingest worker: transports belong to the loop's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(transport.close)


class HostLogBridge:
    """Receives plugin logs, replays them into the host's logging and exports them via OTLP.

    Use as a context manager, or ``start()`` then ``shutdown(timeout_millis)``. Settings come
    from keyword arguments (``HostConfig`` field names), then ``OTEL_PLUGIN_LOGS_*`` and the
    standard ``OTEL_*`` variables, then defaults. ``sink`` replaces the configured exporter:
    any ``otel_plugin_logs.Sink`` (it gets ``Item``s, returns an ``Outcome``), for a custom
    destination, or ``otel_plugin_logs.testing.MemorySink`` in tests.
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
        count_limit, length_limit = attribute_limits(env)
        self._limits = Limits(
            self.config.max_body_bytes,
            min(self.config.max_attribute_length, length_limit or self.config.max_attribute_length),
            count_limit,
        )
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()  # taken before self._lock, never while holding it
        self._retired_rpc: dict[tuple[str, int], int] = {}  # (plugin, stream) -> settled seq
        self._plugins: dict[str, _Plugin] = {}
        self._registrations: dict[str, _Registration] = {}
        self._saved_streams: dict[str, int] = {}
        self._saved_dropped: dict[str, dict[str, int]] = {}
        self._saved_in_doubt: dict[str, int] = {}
        self._connections: set[_Connection] = set()
        self._handshaking: set[_Connection] = set()  # accepted, hello not processed yet
        self._listen_fd = -1
        self._rejected: Counter[str] = Counter()
        self._warned: dict[tuple[str, str], float] = {}
        self._processes: list[PluginProcess] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._listener: UnixListener | None = None
        self._connection_limits = ConnectionLimits.from_config(self.config)
        self._connection_table = ConnectionTable(self._connection_limits)
        self._ingest_budget = IngestBudget(
            self._connection_limits.max_buffered_bytes, self._connection_limits.plugin_share_bytes
        )
        self._accept_errors = 0
        self._accept_tasks: set[asyncio.Task[None]] = set()
        self._ingest_worker: IngestWorker[_Connection] | None = None
        self._loop_ident = -1
        self._pipeline: ExportPipeline | None = None
        self._sink: Sink | None = None
        self._runtime_dir = ""
        self._owns_runtime_dir = False
        self._registry_dirty = False
        self._flush_id = 0
        self._started = False
        self._stopped = False
        self._shutting_down = False
        self._base_resource: dict[str, Any] = {}
        self._host_service = DEFAULT_HOST_SERVICE_NAME
        self._legacy = LegacyIngest(self.handle_batch, self._count_rpc_bad_input, self.config.max_frame_bytes)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return os.path.join(self._runtime_dir, "bridge.sock")

    @property
    def runtime_dir(self) -> str:
        return self._runtime_dir

    @property
    def sink_description(self) -> str:
        return self._sink.description if self._sink is not None else ""

    @property
    def config_resolution(self) -> Resolved:
        return self.config_sources

    def start(self) -> HostLogBridge:
        """Start the server, the export worker and the loop thread. Idempotent."""
        if self._started:
            return self
        self._started = True
        self._base_resource, self._host_service = self._host_resource()
        for note in self.export_settings.notes:
            if "OTEL_CONFIG_FILE" in note:
                _log.warning("%s", note)
        self._prepare_runtime_dir()
        try:
            self._sink = self._sink_override or build_sink(self.export_settings, self.config)
        except OSError as error:
            self._stopped = True
            if self._owns_runtime_dir:
                shutil.rmtree(self._runtime_dir, ignore_errors=True)
            where = self.export_settings.file_path or self.export_settings.destination()
            raise ConfigError(f"cannot open the export sink {where}: {error}") from None
        if not isinstance(self._sink, NullSink):
            self._pipeline = ExportPipeline(
                self._sink,
                self.config,
                self._settle,
                None if self._owns_runtime_dir else self._mark_in_doubt,
            )
        if self._dedupe:
            _guard_otel_handlers(self.config.replay_logger_prefix)
        loop = _quiet_new_event_loop()
        self._loop = loop
        ready = threading.Event()

        self._ingest_worker = IngestWorker(self._handle_job, self.config.ingest_shed_after_millis / 1000.0)

        def run() -> None:
            self._loop_ident = threading.get_ident()
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop_thread = threading.Thread(target=run, name="otel-plugin-logs-host", daemon=True)
        self._loop_thread.start()
        ready.wait()
        future = asyncio.run_coroutine_threadsafe(self._start_server(), loop)
        future.result(timeout=10)
        return self

    def __enter__(self) -> HostLogBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def _start_server(self) -> None:
        path = self.socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        loop = asyncio.get_running_loop()
        self._listener = UnixListener(loop, path, self._on_accept, self._on_accept_error)
        self._listen_fd = self._listener.fileno()
        loop.call_later(_ACK_INTERVAL_SECONDS, self._tick_acks)
        loop.call_later(self.config.report_interval_millis / 1000.0, self._tick_reports)

    def _prepare_runtime_dir(self) -> None:
        configured = self.config.runtime_dir
        if configured:
            os.makedirs(configured, mode=0o700, exist_ok=True)
            info = os.stat(configured)
            if info.st_uid != os.getuid():
                raise PermissionError(
                    f"runtime dir {configured} is owned by uid {info.st_uid}, not by this user"
                )
            os.chmod(configured, 0o700)
            self._runtime_dir = configured
            self._load_registry()
        else:
            self._runtime_dir = tempfile.mkdtemp(prefix="otel-plugin-logs-")
            self._owns_runtime_dir = True
        os.makedirs(self._exit_counter_dir, mode=0o700, exist_ok=True)
        # Counters of runners an earlier host instance forgot would otherwise stay forever.
        _exit_counter.prune(self._exit_counter_dir, set(self._registrations))
        if len(self.socket_path.encode()) > 100:
            raise ValueError(
                f"socket path {self.socket_path} is too long for a Unix socket: "
                "set OTEL_PLUGIN_LOGS_RUNTIME_DIR to a shorter directory"
            )

    def _host_resource(self) -> tuple[dict[str, Any], str]:
        attributes = detect_host_resource(self._environ)
        host_service = (
            self._service_name
            or self._environ.get("OTEL_SERVICE_NAME", "").strip()
            or str(attributes.get("service.name", ""))
        )
        if not host_service or host_service.startswith("unknown_service"):
            host_service = DEFAULT_HOST_SERVICE_NAME
        return attributes, host_service

    def _plugin_resource(self, plugin: _Plugin, pid: int) -> ResourceInfo:
        attributes = dict(self._base_resource)
        attributes.setdefault("service.namespace", self._host_service)
        attributes["service.name"] = plugin.name
        attributes[RESOURCE_PLUGIN_NAME] = plugin.name
        if plugin.version:
            attributes[RESOURCE_PLUGIN_VERSION] = plugin.version
        attributes["process.pid"] = pid
        attributes["service.instance.id"] = str(uuid.uuid4())
        return ResourceInfo(attributes)

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Flush runners, then the exporter, within one deadline; count what is left.

        Idempotent. Returns True when nothing had to be dropped at shutdown. Spawned runners
        that still run are stopped first: SIGTERM, the kill timeout, SIGKILL (README, "Supervision").
        """
        if self._shutting_down:
            return True
        if self._stopped or not self._started:
            self._stopped = True
            return True
        self._shutting_down = True  # spawned runners still send while they stop: not _stopped yet
        timeout = self.config.shutdown_timeout_millis if timeout_millis is None else timeout_millis
        deadline = time.monotonic() + timeout / 1000.0
        with self._lock:
            spawned = [process for process in self._processes if process.running]
        # Spawned runners send what they hold before they are told to stop (a plugin that dies
        # of SIGTERM sends nothing more); what they log while stopping still comes in.
        self._flush_runners(time.monotonic() + (deadline - time.monotonic()) / 2)
        if spawned:
            self._stop_spawned(spawned, deadline)
        self._stopped = True
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_server(), loop).result(
                timeout=max(0.1, deadline - time.monotonic())
            )
        if self._ingest_worker is not None:
            # What the closed connections sent is taken in before the exporter's last round.
            self._ingest_worker.stop(time.monotonic() + (deadline - time.monotonic()) / 2)
        # Nothing arrives any more: the last gaps and drops are known now, and their notices
        # go into the export queue ahead of its shutdown, so they are exported like the rest.
        self._finalize_streams()
        self._report(final=True)
        left = 0
        if self._pipeline is not None:
            left = self._pipeline.shutdown(deadline)
        elif self._sink is not None:
            self._sink.shutdown()
        self._report(final=True)  # what the export queue had to drop: logged, nowhere left to export
        self._save_registry()
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(max(0.1, deadline - time.monotonic()))  # stopping: quick
        with contextlib.suppress(Exception):
            loop.close()
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.exited.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        if self._owns_runtime_dir:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        return left == 0

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

    async def _close_server(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            every = [*self._connections, *self._handshaking]
        for conn in every:
            conn.close()
        await asyncio.sleep(0)  # let the transports' connection_lost run

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Ask live runners to send what they hold, then export everything received."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        runners_ok = self._flush_runners(time.monotonic() + timeout_millis / 2000.0)
        exported_ok = True
        if self._pipeline is not None:
            exported_ok = self._pipeline.force_flush(max(0.0, deadline - time.monotonic()))
        return runners_ok and exported_ok

    def _quiescent(self) -> bool:
        """No connection waits to be accepted or to finish its handshake.

        A runner that connected and exited quickly may still sit in the listen backlog or have
        an unread hello: its records are not known to the bridge yet, but they are coming.
        """
        with self._lock:
            if self._handshaking:
                return False
        if self._ingest_worker is not None and not self._ingest_worker.idle():
            return False
        if self._listen_fd < 0:
            return True
        try:
            readable, _, _ = select.select([self._listen_fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return not readable

    def _flush_runners(self, deadline: float) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed():
            return True
        while not self._quiescent() and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            self._flush_id += 1
            flush_id = self._flush_id
            live = [c for c in self._connections if c.stream is not None and not c.closed]
        for conn in live:
            loop.call_soon_threadsafe(conn.send, messages.flush(flush_id))
        while time.monotonic() < deadline:
            with self._lock:
                waiting = [
                    c for c in live if not c.closed and c.stream is not None and c.stream.flushed < flush_id
                ]
            if not waiting:
                return True
            time.sleep(0.01)
        return False

    # --- plugins and runners ---------------------------------------------------------------

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
        if not self._started:
            raise RuntimeError("start the bridge before registering runners")
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            self._registrations[digest] = _Registration(plugin, version, token, digest, pid)
            self._plugin(plugin, version)
            self._registry_dirty = True
        if pid is not None:
            self._save_registry()
        return {ENV_SOCKET: self.socket_path, ENV_TOKEN: token, ENV_PLUGIN_NAME: plugin}

    def release_runner(self, token: str) -> bool:
        """Tell the bridge that a runner registered with ``register_runner`` has ended.

        The bridge watches the runners it spawns itself; for the others, call this once the
        process is gone. Its token stops working, what it announced but never sent counts as
        ``gap``, and nothing of it is kept once its records are settled. Returns False for a
        token the bridge does not know (or already released).
        """
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            registration = self._registrations.get(digest)
            if registration is None or registration.ended:
                return False
            registration.ended = True
            plugin = self._plugins.get(registration.plugin)
            streams = list(plugin.streams.values()) if plugin is not None else []
            for stream in streams:
                if stream.key[0] == digest and stream.conn is None and not stream.finished:
                    self._finish(stream)
            self._release_registration(digest)
            self._registry_dirty = True
        self._save_registry()
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
        token = runner_env[ENV_TOKEN]
        child_env = self._child_env(name, runner_env, env, auto_install)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:  # the child cannot be authenticated before its pid is recorded
            popen = subprocess.Popen(
                list(argv),
                env=child_env,
                cwd=cwd,
                stdin=stdin,
                stdout=subprocess.PIPE if capture_stdout else stdout,
                stderr=subprocess.PIPE,
                process_group=0 if new_process_group else None,
                # The hook takes no lock and runs no Python-level import between fork and exec
                # (one prctl call, one getppid): the usual thread-safety concern does not apply.
                preexec_fn=die_with_parent_hook() if die_with_parent else None,  # noqa: PLW1509
            )
            registration = self._registrations[digest]
            registration.pid = popen.pid
            registration.token = None
            plugin_state = self._plugin(name, version)
            registration.resource = self._plugin_resource(plugin_state, popen.pid)
            plugin_state.last_resource = registration.resource
            self._registry_dirty = True
        # Written before the runner can connect: a host killed a moment later still knows it.
        self._save_registry()
        process = PluginProcess(name, popen, digest, own_group=new_process_group, settle=self._settle_process)
        with self._lock:
            self._processes.append(process)
        self._watch(process, capture_stdout)
        if auto_install:
            process._connect_deadline = time.monotonic() + self.config.connect_timeout_millis / 1000.0
        return process

    def _child_env(
        self, name: str, runner_env: Mapping[str, str], env: Mapping[str, str] | None, auto_install: bool
    ) -> dict[str, str]:
        child_env = dict(os.environ if env is None else env)
        child_env.update(runner_env)
        if auto_install:
            child_env[ENV_AUTO_INSTALL] = "1"
            existing = child_env.get("PYTHONPATH", "")
            child_env["PYTHONPATH"] = _BOOTSTRAP_DIR + (os.pathsep + existing if existing else "")
            child_env["OTEL_PLUGIN_LOGS_FALLBACK_PATH"] = _fallback_path()
        # The plugin's own OTel SDK (its spans) names the same service as its logs: the plugin,
        # in the host's namespace. The host's own OTEL_SERVICE_NAME must not leak into it.
        child_env["OTEL_SERVICE_NAME"] = name
        child_env["OTEL_RESOURCE_ATTRIBUTES"] = with_resource_attributes(
            child_env.get("OTEL_RESOURCE_ATTRIBUTES", ""),
            {"service.namespace": self._host_service, RESOURCE_PLUGIN_NAME: name},
        )
        if not self.config.plugin_log_export:
            child_env.update(PLUGIN_OWN_LOG_EXPORT_OFF)
        return child_env

    def _watch(self, process: PluginProcess, capture_stdout: bool) -> None:
        """One reader per captured stream, and one thread that waits for the exit."""
        popen = process.popen
        pumps = []
        for iostream, pipe in (
            ("stderr", popen.stderr),
            ("stdout", popen.stdout if capture_stdout else None),
        ):
            if pipe is not None:
                pump = threading.Thread(
                    target=self._pump_output,
                    args=(process, iostream, pipe),
                    name=f"otel-plugin-logs-{iostream}-{process.name}",
                    daemon=True,
                )
                pump.start()
                pumps.append(pump)
        threading.Thread(
            target=self._watch_exit,
            args=(process, pumps),
            name=f"otel-plugin-logs-exit-{process.name}",
            daemon=True,
        ).start()

    def _check_connected(self) -> None:
        """Say so when a spawned runner never connected: its records would only reach stderr."""
        now = time.monotonic()
        late = []
        with self._lock:
            for process in self._processes:
                deadline = process._connect_deadline
                if deadline is None or now < deadline:
                    continue
                process._connect_deadline = None  # checked once
                registration = self._registrations.get(process._digest)
                if registration is not None and not registration.connected:
                    late.append(process)
        for process in late:
            if process.popen.poll() is not None:
                continue
            _log.warning(
                "plugin %s (pid %d) has not connected after %.0f s: only its stderr is captured. Is it a "
                "Python process started with -I/-E or -S (no sitecustomize)? It can call "
                "otel_plugin_logs.runner.install() itself.",
                process.name,
                process.pid,
                self.config.connect_timeout_millis / 1000.0,
            )

    def _plugin(self, name: str, version: str | None = None) -> _Plugin:
        plugin = self._plugins.get(name)
        if plugin is None:
            plugin = self._plugins[name] = _Plugin(name, version, self.config)
        elif version and not plugin.version:
            plugin.version = version
        return plugin

    # --- connections -------------------------------------------------------------------------

    def _worker(self) -> IngestWorker[_Connection]:
        worker = self._ingest_worker
        assert worker is not None, "started bridges have an ingest worker"
        return worker

    def _handle_job(self, job: Job[_Connection], shed: bool) -> None:
        """A frame of an authenticated connection, or its end (ingest worker thread)."""
        conn = job.conn
        try:
            if job.body is None:
                self._stream_lost(conn)
            elif not conn.input_refused:
                message = decode_message(job.body, self.config.max_frame_bytes)
                self._on_message(conn, message, len(job.body), shed)
        except ProtocolError as error:
            conn.input_refused = True  # what it sent after the bad frame is not taken in
            self._bad_input(conn, error.reason, error.detail)
        except Exception as error:  # a bug of ours must not take the host down with it
            conn.input_refused = True
            self._bad_input(conn, "internal_error", f"{type(error).__name__}: {error}")
            _log.debug("internal error on a runner connection", exc_info=True)
        finally:
            loop = self._loop
            if job.reserved_bytes and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
                    loop.call_soon_threadsafe(self._ingest_budget.release, job.owner, job.reserved_bytes)

    def _on_message(
        self, conn: _Connection, message: dict[str, Any], frame_bytes: int = 0, shed: bool = False
    ) -> None:
        kind = message["t"]
        if conn.stream is None:
            if kind != HELLO:
                raise ProtocolError("unexpected_frame", f"expected hello, got {kind[:32]!r}")
            self._on_hello(conn, message)
            return
        if kind in (BATCH, BYE):
            try:
                header = BatchHeader.model_validate(message)
            except ValidationError as error:
                raise ProtocolError("malformed_batch", first_error(error)) from None
            self._ingest(conn.stream, header, frame_bytes, shed)
            if kind == BYE:
                conn.said_bye = True
            return
        raise ProtocolError("unexpected_frame", f"unexpected {kind[:32]!r} after the handshake")

    def _on_accept(self, sock: socket.socket) -> None:
        """Count a new connection in, or refuse it at once when a cap is reached (loop thread)."""
        pid, uid = peer_credentials(sock)
        conn = _Connection(self, pid, uid)
        with self._lock:
            refused = self._connection_table.admit(conn, -1 if uid is None else uid, spoke=has_spoken(sock))
            if refused is None:
                self._handshaking.add(conn)
            else:
                self._rejected[refused] += 1
        if refused is not None:
            sock.close()
            self._warn_once(
                "-", refused, "refused a runner connection (pid %s, uid %s): %s", pid, uid, refused
            )
            return
        evicted = self._connection_table.oldest_pending_over_cap()
        if isinstance(evicted, _Connection):
            self._connection_table.authenticated(evicted)  # out of the handshake pool: closing
            self._reject(evicted, EVICTED_PENDING, "too many connections in their handshake")
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._connect_accepted(loop, conn, sock))
        self._accept_tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._accept_tasks.discard)

    async def _connect_accepted(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, sock: socket.socket
    ) -> None:
        try:
            await loop.connect_accepted_socket(lambda: conn, sock)
        except Exception as error:  # e.g. EMFILE while setting the transport up
            sock.close()
            conn.closed = True
            self._on_connection_lost(conn)
            self._on_accept_error(error if isinstance(error, OSError) else OSError(str(error)))

    def _on_accept_error(self, error: OSError) -> None:
        """Accept failed (EMFILE and friends): counted, reported once per interval, never a traceback."""
        with self._lock:
            self._accept_errors += 1
            self._rejected[ACCEPT_ERROR] += 1
            count = self._accept_errors
        self._warn_once(
            "-",
            ACCEPT_ERROR,
            "cannot accept runner connections: %s (%d failed accepts so far; the listener backs off)",
            error,
            count,
        )

    def _on_connection_made(self, conn: _Connection) -> None:
        if conn.closed and conn.transport is not None:
            conn.transport.close()  # it was closed (evicted) before its transport existed

    def _on_hello(self, conn: _Connection, message: dict[str, Any]) -> None:
        with self._lock:
            self._handshaking.discard(conn)
        if message.get("v") != PROTOCOL_VERSION:
            self._reject(
                conn,
                "protocol_version",
                f"runner speaks {message.get('v')!r}, host speaks {PROTOCOL_VERSION}",
            )
            return
        try:
            hello = Hello.model_validate(message)
        except ValidationError as error:
            self._reject(conn, "malformed_hello", first_error(error))
            return
        if conn.peer_uid is not None and conn.peer_uid != os.getuid():
            self._reject(conn, "peer_uid", f"peer uid {conn.peer_uid} is not the host's uid {os.getuid()}")
            return
        digest = hashlib.sha256(hello.token.encode()).hexdigest()
        with self._lock:
            registration = self._registrations.get(digest)
            known = registration is not None and hmac.compare_digest(registration.digest, digest)
            if not known or registration is None or registration.ended:
                self._reject(conn, "bad_token", "unknown session token")
                return
            conn.plugin_name = registration.plugin
            peer = conn.peer_pid if conn.peer_pid is not None else hello.pid
            if registration.pid is not None and not _same_or_descendant(peer, registration.pid):
                self._reject(
                    conn,
                    "token_pid_mismatch",
                    f"token of runner pid {registration.pid} presented by pid {peer}",
                )
                return
            registration.connected = True
            plugin = self._plugin(registration.plugin, hello.plugin_version or registration.version)
            key = (digest, hello.stream)
            stream = plugin.streams.get(key)
            if stream is None and not self._make_room_for_stream(plugin, digest):
                self._reject(
                    conn,
                    "too_many_streams",
                    f"runner already has {self.config.max_streams_per_runner} streams connected",
                )
                return
            if stream is None:
                base = self._saved_streams.get(f"{digest}:{hello.stream}", 0)
                resource = registration.resource
                if resource is None or resource.attributes.get("process.pid") != peer:
                    resource = self._plugin_resource(plugin, peer)
                saved = f"{digest}:{hello.stream}"
                stream = _Stream(
                    plugin,
                    key,
                    resource,
                    peer,
                    base,
                    self._saved_dropped.get(saved),
                    self._saved_in_doubt.get(saved, 0),
                )
                plugin.streams[key] = stream
                plugin.last_resource = stream.resource
            elif stream.conn is not None and not stream.conn.closed:
                stream.conn.close()  # the runner reconnected before we saw the old one drop
            stream.conn = conn
            stream.closed = False
            conn.stream = stream
            self._connection_table.authenticated(conn)
            conn.reader.set_owner(plugin.name)
            plugin.counters.connections += 1
            self._connections.add(conn)
            settled = stream.settled
        conn.send(messages.welcome(settled, self.config.max_frame_bytes))

    def _make_room_for_stream(self, plugin: _Plugin, digest: str) -> bool:
        """Whether a runner may open one more stream; retires its oldest disconnected one if needed.

        A stream is kept while its process may come back; a runner that opens new stream ids
        without saying bye must not make the host keep each of them (lock held).
        """
        mine = [s for key, s in plugin.streams.items() if key[0] == digest and not s.finished]
        if len(mine) < self.config.max_streams_per_runner:
            return True
        for old in mine:  # oldest first (insertion order)
            if old.conn is None:
                self._finish(old)  # what it announced but never sent is counted as gap
                return True
        return False

    def _count_bad_input(self, conn: _Connection, reason: str) -> None:
        with self._lock:
            if conn.stream is None:
                self._rejected[reason] += 1  # refused before it became a runner of a plugin
            plugin = self._plugins.get(conn.plugin_name)
            if plugin is not None:
                plugin.counters.bad_input[reason] += 1

    def _reject(self, conn: _Connection, reason: str, detail: str) -> None:
        self._count_bad_input(conn, reason)
        self._warn_once(
            conn.plugin_name,
            reason,
            "rejected a runner connection of plugin %s (pid %s): %s: %s",
            conn.plugin_name,
            conn.peer_pid,
            reason,
            detail,
        )
        conn.send(messages.reject(f"{reason}: {detail}"))
        conn.close()

    def _bad_input(self, conn: _Connection, reason: str, detail: str) -> None:
        self._count_bad_input(conn, reason)
        self._warn_once(
            conn.plugin_name,
            reason,
            "closed the connection of plugin %s (pid %s): %s: %s",
            conn.plugin_name,
            conn.peer_pid,
            reason,
            escape_controls(detail[:300]),
        )
        conn.close()

    def _on_connection_lost(self, conn: _Connection) -> None:
        with self._lock:
            self._connection_table.remove(conn, -1 if conn.peer_uid is None else conn.peer_uid)
            self._handshaking.discard(conn)
            self._connections.discard(conn)
        if conn.stream is not None and self._ingest_worker is not None:
            self._ingest_worker.put(Job(conn, None))  # after the frames it sent before it went

    def _stream_lost(self, conn: _Connection) -> None:
        """A connection's end, once its frames were handled (ingest worker thread)."""
        with self._lock:
            stream = conn.stream
            if stream is None or stream.conn is not conn:
                return
            stream.conn = None
            stream.closed = True
            if conn.said_bye or self._runner_gone(stream):
                self._finish(stream)
        if not conn.said_bye:
            _log.debug(
                "runner of plugin %s (pid %s) disconnected without a bye", conn.plugin_name, conn.peer_pid
            )
            if conn.peer_pid is not None and not _process_alive(conn.peer_pid):
                # It crashed: what it accepted but never sent is lost for good; count it now.
                with self._lock:
                    registration = self._registrations.get(stream.key[0])
                    if registration is not None and registration.pid == conn.peer_pid:
                        registration.ended = True  # e.g. a runner taken back after a host restart
                        self._registry_dirty = True
                    if stream.conn is None and not stream.finished:
                        self._finish(stream)
                    self._release_registration(stream.key[0])

    # --- ingest --------------------------------------------------------------------------------

    def handle_batch(self, plugin: str, payload: bytes | Mapping[str, Any], *, pid: int | None = None) -> int:
        """Take a batch that arrived over the host's own RPC; returns the settled sequence number.

        ``payload`` is a batch frame body (msgpack bytes, as a runner's ``Transport`` sends it)
        or its decoded map. ``plugin`` is who the host knows sent it; it is not read from the
        payload. Raises ``ProtocolError`` for a malformed payload (nothing else is affected).
        """
        if not self._started:
            raise RuntimeError("start the bridge before handing it batches")
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
        with self._lock:
            retired = self._retired_rpc.get((plugin, header.stream))
            if retired is not None:
                return retired  # it said bye and everything is settled: a retry, nothing new
            state = self._plugin(plugin)
            key = ("rpc", header.stream)
            stream = state.streams.get(key)
            if stream is None:
                stream = _Stream(state, key, self._plugin_resource(state, pid or 0), pid or 0, 0)
                state.streams[key] = stream
                state.last_resource = stream.resource
        self._ingest(stream, header)
        with self._lock:
            self._advance(stream)
            if header.t == BYE and not stream.finished:
                stream.closed = True
                self._finish(stream)
            return stream.settled

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
        if not self._started:
            raise RuntimeError("start the bridge before handing it batches")
        return self._legacy.take(plugin, payload, pid, final)

    def _count_rpc_bad_input(self, plugin: str, reason: str, count: int, detail: str) -> None:
        with self._lock:
            self._plugin(plugin).counters.bad_input[reason] += count
        self._warn_once(
            plugin,
            reason,
            "refused input of plugin %s from the host's RPC: %s: %s",
            plugin,
            reason,
            escape_controls(detail[:300]),
        )

    def _ingest(self, stream: _Stream, header: BatchHeader, frame_bytes: int = 0, shed: bool = False) -> None:
        records, invalid = validate_records(header.records) if header.records else ([], [])
        now_ns = time.time_ns()
        plugin = stream.plugin
        counters = plugin.counters
        with self._lock:
            fresh = []
            duplicates = 0
            high = stream.high
            in_doubt = stream.in_doubt
            for record in records:
                seq = record[0]
                if seq <= high:
                    duplicates += 1  # delivered already: discarded
                else:
                    high = seq
                    fresh.append(record)
                    if seq <= in_doubt:
                        duplicates += 1  # a killed host may have exported it: exported again
            stream.high = high
            stream.received += len(fresh) + len(invalid)
            counters.received += len(fresh) + len(invalid)
            counters.duplicates += duplicates
            if invalid:
                counters.host_dropped[DROP_INVALID] += len(invalid)
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
            ticket = _Ticket(stream, high, len(fresh))
            stream.tickets.append(ticket)
            plugin.pending += len(fresh)
            stream.accepted = max(stream.accepted, header.accepted, high)
            if header.dropped:
                self._take_runner_drops(stream, sanitize_counters(header.dropped))
            if header.flushed:
                stream.flushed = max(stream.flushed, header.flushed)
            self._check_gap(stream, final=header.t == BYE)
        if invalid:
            self._warn_once(
                plugin.name,
                DROP_INVALID,
                "plugin %s sent %d invalid record(s): %s",
                plugin.name,
                len(invalid),
                invalid[0],
            )
        if not fresh:
            with self._lock:  # nothing to export: settled once every earlier record is
                self._advance(stream)
            return
        entries = []
        replay = self.config.replay
        replayed = 0
        otel = stream.otel
        replayer = plugin.replayer
        for record in fresh:
            entry, levelno, stacktrace = build_entry(record, self._limits, now_ns)
            entries.append(entry)
            if replay:
                try:
                    if replayer.replay(entry, levelno, stacktrace, otel):
                        replayed += 1
                except Exception:
                    # A host handler failed; logging's own handleError already reported it
                    # for handler errors, so this is a bug in a filter or in ours.
                    _log.debug("replay failed", exc_info=True)
        self._enqueue(stream, ticket, entries, replayed)

    def _take_runner_drops(self, stream: _Stream, reported: Mapping[str, int]) -> None:
        """Take a runner's cumulative drop counters, clamped to what it can have dropped (lock held).

        A runner cannot have dropped more records than it sequenced and did not send: a claim
        of 2^64-1 must not reach the counters, the notices or an export request.
        """
        for reason, total in sorted(reported.items()):
            count = total - stream.base_dropped.get(reason, 0)  # minus drops seen before a restart
            others = sum(v for r, v in stream.runner_dropped.items() if r != reason)
            ceiling = max(0, stream.accepted - stream.base - stream.received - others)
            count = min(count, ceiling)
            # Counters are cumulative, but a resent old frame carries older values.
            if count > stream.runner_dropped.get(reason, 0):
                stream.runner_dropped[reason] = count

    def _enqueue(self, stream: _Stream, ticket: _Ticket, entries: list[Entry], replayed: int) -> None:
        plugin = stream.plugin
        resource = stream.resource
        pipeline = self._pipeline
        with self._lock:
            plugin.counters.replayed += replayed
        if pipeline is None:
            with self._lock:
                plugin.counters.discarded += len(entries)
                plugin.pending -= len(entries)
                ticket.pending = 0
                self._advance(stream)
            return
        prefix = _record_uid_prefix(plugin.name, stream.key)
        for entry in entries:
            entry.uid = f"{prefix}{entry.seq:016x}"
        items = [Item.of(resource, entry, ticket) for entry in entries]
        refused = pipeline.offer(items)
        if refused:
            self._settle(refused, DROP_EXPORT_QUEUE_FULL)

    def _settle(self, items: Sequence[Item], reason: str | None) -> None:
        """Called once per record as it leaves the export queue (exported, or dropped)."""
        with self._lock:
            for ticket in (item.ticket for item in items):
                if ticket is None:
                    continue  # a bridge notice or a stderr line, outside the per-record accounting
                ticket.pending -= 1
                plugin = ticket.stream.plugin
                plugin.pending -= 1
                if reason is None:
                    plugin.counters.exported += 1
                else:
                    plugin.counters.host_dropped[reason] += 1
            streams = {item.ticket.stream for item in items if item.ticket is not None}
            for stream in streams:
                self._advance(stream)

    def _mark_in_doubt(self, items: Sequence[Item]) -> None:
        """Write ahead, before an export: what a host killed during it may have exported.

        A restarted host counts those records as duplicates when the runner resends them.
        Only with a configured runtime dir (a temporary one does not outlive the host).
        """
        changed = False
        with self._lock:
            for item in items:
                ticket = item.ticket
                if ticket is None:
                    continue
                stream = ticket.stream
                if item.entry.seq > stream.exported_high and stream.key[0] != "rpc":
                    stream.exported_high = item.entry.seq
                    changed = True
            if changed:
                self._registry_dirty = True
        if changed:
            self._save_registry()

    def _advance(self, stream: _Stream) -> None:
        tickets = stream.tickets
        while tickets and tickets[0].pending <= 0:
            stream.settled = max(stream.settled, tickets.popleft().last_seq)
        if stream.finished and not tickets:
            self._retire(stream)

    def _finish(self, stream: _Stream) -> None:
        """The stream's runner is gone (bye, or its process exited): count its gap (lock held)."""
        self._check_gap(stream, final=True)
        stream.finished = True
        if not stream.tickets:
            self._retire(stream)

    def _retire(self, stream: _Stream) -> None:
        """Fold a finished, settled stream into its plugin's counters and let it go (lock held).

        A host that restarts plugins for weeks must not keep every runner it ever saw.
        """
        plugin = stream.plugin
        if plugin.streams.get(stream.key) is not stream or stream.conn is not None:
            return
        del plugin.streams[stream.key]
        if stream.key[0] == "rpc":  # a retried bye must not start the stream over
            self._retired_rpc[(plugin.name, stream.key[1])] = stream.settled
            while len(self._retired_rpc) > _MAX_RETIRED_RPC_STREAMS:
                del self._retired_rpc[next(iter(self._retired_rpc))]
        if stream.key[0] != "rpc":  # what the host counted survives a host restart
            _exit_counter.mark_accounted(self._exit_counter_path(stream), stream.accepted)
        counters = plugin.counters
        counters.retired_emitted += stream.accepted - stream.base
        counters.retired_dropped.update(stream.runner_dropped)
        self._registry_dirty = True
        digest = stream.key[0]
        self._saved_streams.pop(f"{digest}:{stream.key[1]}", None)
        self._saved_dropped.pop(f"{digest}:{stream.key[1]}", None)
        self._saved_in_doubt.pop(f"{digest}:{stream.key[1]}", None)
        self._release_registration(digest)

    def _runner_gone(self, stream: _Stream) -> bool:
        """Whether the process behind ``stream`` is known to have ended (lock held).

        Known from the registration, not from a pid, which the system may give to another
        process; a forked child shares its parent's token but not its pid.
        """
        registration = self._registrations.get(stream.key[0])
        return (
            registration is not None
            and registration.ended
            and (registration.pid is None or stream.otel["runner_pid"] == registration.pid)
        )

    def _release_registration(self, digest: str) -> None:
        """Forget a runner's token once it ended and none of its streams is left (lock held)."""
        registration = self._registrations.get(digest)
        if registration is None or not registration.ended:
            return
        plugin = self._plugins.get(registration.plugin)
        if plugin is not None and any(key[0] == digest for key in plugin.streams):
            return
        del self._registrations[digest]
        self._count_unsent_at_exit(registration.plugin, digest)
        prefix = digest + ":"
        for saved in (self._saved_streams, self._saved_dropped, self._saved_in_doubt):
            for key in [key for key in saved if key.startswith(prefix)]:
                del saved[key]
        self._registry_dirty = True

    @property
    def _exit_counter_dir(self) -> str:
        return _exit_counter.counter_dir(self.socket_path)

    def _exit_counter_path(self, stream: _Stream) -> str:
        return os.path.join(self._exit_counter_dir, _exit_counter.file_name(stream.key[0], stream.key[1]))

    def _count_unsent_at_exit(self, plugin_name: str, digest: str) -> None:
        """A runner identity ended: count what its processes accepted but never sent (lock held).

        Its exit counters cover every stream it had, also a forked child that died before it
        ever connected; what the host counted already is written in each file.
        """
        for reading in _exit_counter.read_counters(self._exit_counter_dir, digest):
            lost = reading.unaccounted
            if lost:
                plugin = self._plugin(plugin_name)
                plugin.counters.retired_emitted += lost
                plugin.counters.host_dropped[DROP_UNSENT_AT_EXIT] += lost
                self._registry_dirty = True
            _exit_counter.remove(reading.path)

    def _check_gap(self, stream: _Stream, *, final: bool) -> None:
        """Count sequence numbers that neither arrived nor were reported dropped (lock held)."""
        top = stream.accepted if final else stream.high
        missing = top - stream.base - stream.received - sum(stream.runner_dropped.values())
        if missing > stream.gap:
            stream.plugin.counters.host_dropped[DROP_GAP] += missing - stream.gap
            stream.gap = missing

    def _finalize_streams(self) -> None:
        with self._lock:
            for plugin in self._plugins.values():
                for stream in plugin.streams.values():
                    if stream.closed or stream.conn is None:
                        self._check_gap(stream, final=True)

    # --- periodic work (loop thread) --------------------------------------------------------

    def _tick_acks(self) -> None:
        loop = self._loop
        try:
            acks = []
            with self._lock:
                for plugin in self._plugins.values():
                    for stream in plugin.streams.values():
                        if stream.settled > stream.acked and stream.conn is not None:
                            acks.append((stream.conn, stream.settled))
                            stream.acked = stream.settled
                            self._registry_dirty = True
            if self._registry_dirty and not self._owns_runtime_dir:
                self._save_registry()
            for conn, seq in acks:
                conn.send(messages.ack(seq))
            self._expire_connections()
            self._check_connected()
        finally:
            if loop is not None and not self._stopped:
                loop.call_later(_ACK_INTERVAL_SECONDS, self._tick_acks)

    def _expire_connections(self) -> None:
        """Close connections past a deadline: no hello, a frame begun but not finished, idle."""
        now = time.monotonic()
        limits = self._connection_limits
        with self._lock:
            late = [c for c in self._handshaking if c.stream is None and now >= c.handshake_deadline]
            stalled = []
            idle = []
            for conn in self._connections:
                started = conn.reader.frame_started
                if started is not None and now - started >= limits.frame_timeout_seconds:
                    stalled.append(conn)
                elif now - conn.last_data >= limits.idle_timeout_seconds:
                    idle.append(conn)
        for conn in late:
            if not conn.closed:
                self._reject(
                    conn, "handshake_timeout", f"no hello within {limits.handshake_timeout_seconds:g} s"
                )
            with self._lock:
                self._handshaking.discard(conn)
        for conn in stalled:
            detail = f"a frame unfinished after {limits.frame_timeout_seconds:g} s"
            self._bad_input(conn, CLOSED_STALLED, detail)
        for conn in idle:
            _log.debug("closing the idle connection of plugin %s (pid %s)", conn.plugin_name, conn.peer_pid)
            conn.close()

    def _tick_reports(self) -> None:
        loop = self._loop
        try:
            self._report(final=False)
        finally:
            if loop is not None and not self._stopped:
                loop.call_later(self.config.report_interval_millis / 1000.0, self._tick_reports)

    def _report(self, *, final: bool) -> None:
        """One WARNING per plugin per interval for new drops; the same as an exported notice."""
        notices: list[tuple[_Plugin, str, str, int, str]] = []
        with self._lock:
            for plugin in self._plugins.values():
                totals = self._dropped_totals(plugin)
                for reason, total in sorted(totals.items()):
                    delta = total - plugin.reported[reason]
                    if delta <= 0:
                        continue
                    plugin.reported[reason] = total
                    if reason == DROP_RATE_LIMITED:
                        text = (
                            f"suppressed {delta} records of plugin {plugin.name} "
                            f"(rate limit {self.config.rate_limit_records_per_second:g} records/s)"
                        )
                        notices.append((plugin, "suppressed", reason, delta, text))
                    else:
                        event = "gap" if reason == DROP_GAP else "dropped"
                        notices.append(
                            (
                                plugin,
                                event,
                                reason,
                                delta,
                                f"dropped {delta} records of plugin {plugin.name}: {reason}",
                            )
                        )
        for plugin, event, reason, count, text in notices:
            _log.warning("%s", text)
            self._export_notice(plugin, event, reason, count, text)
        pipeline = self._pipeline
        if pipeline is not None and pipeline.failing_since is not None and not final:
            waiting, _ = pipeline.depth()
            _log.warning(
                "export to %s failing for %.0f s (%s); %d records waiting",
                self.sink_description,
                time.monotonic() - pipeline.failing_since,
                pipeline.last_error,
                waiting,
            )

    def _export_notice(self, plugin: _Plugin, event: str, reason: str, count: int, text: str) -> None:
        pipeline = self._pipeline
        resource = plugin.last_resource
        if pipeline is None or resource is None:
            return
        now = time.time_ns()
        entry = Entry(
            0,
            now,
            now,
            13,
            "WARNING",
            text,
            BRIDGE_SCOPE_NAME,
            {
                BRIDGE_EVENT_ATTRIBUTE: event,
                BRIDGE_REASON_ATTRIBUTE: reason,
                BRIDGE_COUNT_ATTRIBUTE: max(0, min(count, INT64_MAX)),  # an OTLP int is 64-bit
            },
            None,
            None,
            0,
            event_name=f"{BRIDGE_SCOPE_NAME}.{event}",
        )
        if pipeline.offer([Item.of(resource, entry)]):
            _log.debug("bridge notice not exported (export queue full or stopped): %s", text)
            return
        with self._lock:
            plugin.counters.notices += 1

    def _dropped_totals(self, plugin: _Plugin) -> Counter[str]:
        totals: Counter[str] = Counter(plugin.counters.host_dropped)
        totals.update(plugin.counters.retired_dropped)
        for stream in plugin.streams.values():
            totals.update(stream.runner_dropped)
        return totals

    def _warn_once(self, plugin: str, reason: str, message: str, *args: Any) -> None:
        """The bridge's own warnings, at most one per plugin and reason per report interval."""
        now = time.monotonic()
        with self._lock:
            last = self._warned.get((plugin, reason))
            if last is not None and now - last < self.config.report_interval_millis / 1000.0:
                return
            self._warned[(plugin, reason)] = now
        _log.warning(message, *args)

    # --- stderr and exits ---------------------------------------------------------------------

    def _pump_output(self, process: PluginProcess, iostream: str, pipe: IO[bytes]) -> None:
        level = self.config.stderr_level if iostream == "stderr" else self.config.stdout_level
        with self._lock:
            plugin = self._plugin(process.name)
        logger = logging.getLogger(f"{plugin.replayer.base_name}.{iostream}")

        def on_text(raw: RawText) -> None:
            self._on_raw_text(plugin, process, logger, level, iostream, raw)

        grouper = TracebackGrouper(self.config.max_body_bytes, _MAX_TRACEBACK_LINES)
        try:
            pump_output(
                pipe.fileno(),
                on_text,
                grouper,
                max_line_bytes=_MAX_STDERR_LINE_BYTES,
                idle_seconds=_TRACEBACK_IDLE_SECONDS,
            )
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _watch_exit(self, process: PluginProcess, pumps: Sequence[threading.Thread]) -> None:
        returncode = process.reap()
        # A grandchild may hold stderr open after the runner exited: give the pumps a moment
        # to drain what the runner wrote, but report the exit regardless.
        drain_deadline = time.monotonic() + 2.0
        for pump in pumps:
            pump.join(max(0.0, drain_deadline - time.monotonic()))
        with self._lock:
            plugin = self._plugin(process.name)
        process.returncode = returncode
        with self._lock:
            plugin.counters.exits.append(returncode)
            # A dead runner sends nothing more: what it announced but never sent is a gap now.
            registration = self._registrations.get(process._digest)
            never_connected = (
                process._connect_deadline is not None
                and registration is not None
                and not registration.connected
            )
            process._connect_deadline = None  # no "has not connected" warning for a process that ended
            if registration is not None:
                registration.ended = True
                self._registry_dirty = True
            for stream in list(plugin.streams.values()):
                if stream.closed and stream.otel["runner_pid"] == process.pid:
                    self._finish(stream)
            self._release_registration(process._digest)
            with contextlib.suppress(ValueError):
                self._processes.remove(process)
        if returncode == 0:
            _log.info("plugin %s (pid %d) exited with code 0", process.name, process.pid)
        else:
            described = f"signal {-returncode}" if returncode < 0 else f"code {returncode}"
            text = f"plugin {process.name} (pid {process.pid}) exited with {described}"
            _log.warning("%s", text)
            self._export_notice(plugin, "runner_exit", described, 1, text)
        if never_connected:
            _log.info(
                "plugin %s (pid %d) ended without connecting to the bridge: it sent no records, only its "
                "stderr was captured. If it logged, its handler was not installed: is it a Python "
                "process? Started with -I/-E or -S (no sitecustomize)? Did it replace PYTHONPATH? It can "
                "call otel_plugin_logs.runner.install() itself.",
                process.name,
                process.pid,
            )
        process.exited.set()

    def _settle_process(self, process: PluginProcess, deadline: float | None) -> bool:
        """After its exit: wait until what ``process`` sent was taken in and exported or dropped."""
        if deadline is None:
            deadline = time.monotonic() + self.config.shutdown_timeout_millis / 1000.0
        while True:
            with self._lock:
                plugin = self._plugins.get(process.name)
                busy = plugin is not None and any(
                    s.key[0] == process._digest and s.conn is not None and not s.closed
                    for s in plugin.streams.values()
                )
            if not busy and self._quiescent():
                break
            if time.monotonic() >= deadline or self._stopped:
                return False
            time.sleep(0.005)
        pipeline = self._pipeline
        while pipeline is not None and not self._stopped:
            if pipeline.force_flush(min(0.1, max(0.0, deadline - time.monotonic()))):
                return True
            # A failing exporter is not waited for: its records stay pending, counted as such.
            if pipeline.failing_since is not None or time.monotonic() >= deadline:
                return False
        return True

    def _on_raw_text(
        self,
        plugin: _Plugin,
        process: PluginProcess,
        logger: logging.Logger,
        level: int,
        iostream: str,
        raw: RawText,
    ) -> None:
        with self._lock:
            plugin.counters.stderr_lines += 1
            if plugin.limiter.take(1, time.monotonic()) < 1:
                plugin.counters.stderr_suppressed += 1  # not sequenced: outside the record invariant
                return
            resource = plugin.last_resource
        line = raw.text
        text, _ = truncate_utf8(clean_text(line, len(line)), self.config.max_body_bytes)
        attributes: dict[str, Any] = {"log.iostream": iostream}
        stacktrace = None
        if raw.stacktrace is not None:
            # A printed traceback is an error whatever the stream's level.
            level = max(level, logging.ERROR)
            stacktrace = clean_text(raw.stacktrace, len(raw.stacktrace))
            attributes[EXCEPTION_STACKTRACE] = stacktrace
            if raw.exception_type:
                attributes[EXCEPTION_TYPE] = clean_text(raw.exception_type, self.config.max_attribute_length)
                attributes[EXCEPTION_MESSAGE] = clean_text(
                    raw.exception_message, self.config.max_attribute_length
                )
        now = time.time_ns()
        entry = Entry(
            0,
            raw.time_ns or now,
            now,
            severity_number(level),
            logging.getLevelName(level),
            text,
            iostream,
            attributes,
            None,
            None,
            0,
        )
        if self.config.replay and logger.isEnabledFor(level):
            otel = {
                "plugin": plugin.name,
                "plugin_version": plugin.version,
                "runner_pid": process.pid,
                "resource": resource.attributes if resource is not None else {},
            }
            logger.handle(plugin.replayer.make_record(logger.name, entry, level, stacktrace, otel))
        pipeline = self._pipeline
        if pipeline is not None and resource is not None and not self._stopped:
            pipeline.offer([Item.of(resource, entry)])

    # --- registry (host restart) ----------------------------------------------------------------

    def _load_registry(self) -> None:
        path = os.path.join(self._runtime_dir, _REGISTRY)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            _log.warning("ignoring the unreadable runner registry %s: %s", path, error)
            return
        if not isinstance(data, dict):
            _log.warning("ignoring the runner registry %s: not a JSON object", path)
            return

        def section(name: str) -> dict[str, Any]:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        for digest, info in section("runners").items():
            if (
                isinstance(info, dict)
                and isinstance(info.get("plugin"), str)
                and is_valid_plugin_name(info["plugin"])
            ):
                pid = info.get("pid")
                if isinstance(pid, int) and not _process_alive(pid):
                    continue  # its runner died while no host was listening: nothing will come
                if info.get("ended") is True:
                    continue  # released, or seen exiting, before the last host stopped
                self._registrations[digest] = _Registration(
                    info["plugin"], info.get("version"), None, digest, pid if isinstance(pid, int) else None
                )

        def known(key: str) -> bool:  # streams of runners no longer registered are not kept
            return key.partition(":")[0] in self._registrations

        def positions(name: str) -> dict[str, int]:
            return {k: v for k, v in section(name).items() if isinstance(v, int) and known(k)}

        self._saved_streams = positions("streams")
        self._saved_in_doubt = positions("in_doubt")
        self._saved_dropped = {
            k: {r: c for r, c in v.items() if isinstance(c, int)}
            for k, v in section("dropped").items()
            if isinstance(v, dict) and known(k)
        }
        if self._registrations:
            _log.info("took back %d runner registration(s) from %s", len(self._registrations), path)

    def _save_registry(self) -> None:
        if self._owns_runtime_dir or not self._runtime_dir:
            return
        # One writer at a time, from the snapshot to the rename: the export worker, the loop
        # thread and callers all save. A caller that finds nothing dirty returns only after
        # the write that took its change is on disk (the write-ahead before an export).
        with self._save_lock:
            with self._lock:
                if not self._registry_dirty:
                    return
                self._registry_dirty = False
                data: dict[str, Any] = {
                    "version": 1,
                    "runners": {
                        digest: {"plugin": r.plugin, "version": r.version, "pid": r.pid, "ended": r.ended}
                        for digest, r in self._registrations.items()
                    },
                    "streams": dict(self._saved_streams),
                    "dropped": dict(self._saved_dropped),
                    "in_doubt": dict(self._saved_in_doubt),
                }
                for plugin in self._plugins.values():
                    for (digest, stream_id), stream in plugin.streams.items():
                        if digest != "rpc":
                            key = f"{digest}:{stream_id}"
                            data["streams"][key] = stream.acked
                            in_doubt = max(stream.exported_high, stream.in_doubt)
                            if in_doubt > stream.acked:
                                data["in_doubt"][key] = in_doubt
                            data["dropped"][key] = {
                                r: stream.base_dropped.get(r, 0) + stream.runner_dropped.get(r, 0)
                                for r in {*stream.base_dropped, *stream.runner_dropped}
                            }
            path = os.path.join(self._runtime_dir, _REGISTRY)
            temporary = path + ".tmp"
            try:
                with open(
                    os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
                ) as out:
                    json.dump(data, out)
                os.replace(temporary, path)
            except OSError as error:
                _log.warning("could not save the runner registry %s: %s", path, error)

    # --- introspection ----------------------------------------------------------------------------

    def stats(self) -> BridgeStats:
        """A consistent snapshot of every counter."""
        pipeline = self._pipeline
        depth = pipeline.depth() if pipeline is not None else (0, 0)
        with self._lock:
            plugins = {}
            for name, plugin in self._plugins.items():
                counters = plugin.counters
                dropped = dict(self._dropped_totals(plugin))
                emitted = counters.retired_emitted
                in_runner = 0
                for stream in plugin.streams.values():
                    emitted += stream.accepted - stream.base
                    if not stream.closed:
                        in_runner += max(
                            0,
                            stream.accepted
                            - stream.base
                            - stream.received
                            - sum(stream.runner_dropped.values())
                            - stream.gap,
                        )
                plugins[name] = PluginStats(
                    name=name,
                    emitted=emitted,
                    received=counters.received,
                    duplicates=counters.duplicates,
                    replayed=counters.replayed,
                    exported=counters.exported,
                    discarded=counters.discarded,
                    dropped={k: v for k, v in dropped.items() if v},
                    pending=plugin.pending + in_runner,
                    stderr_lines=counters.stderr_lines,
                    connections=counters.connections,
                    bad_input=dict(counters.bad_input),
                    exits=tuple(counters.exits),
                    notices=counters.notices,
                )
            return BridgeStats(
                plugins=plugins,
                exporter=self.sink_description,
                queue_records=depth[0],
                queue_bytes=depth[1],
                export_failing=pipeline is not None and pipeline.failing_since is not None,
                last_export_error=pipeline.last_error if pipeline is not None else "",
                rejected_connections=dict(self._rejected),
            )

    def wait_for_plugin(self, name: str, timeout_seconds: float) -> bool:
        """Wait until every connection of ``name`` is closed and all it sent was taken in.

        Call it after the plugin's processes exited: a connection still in the accept backlog
        or in its handshake may be theirs, so those are waited for too.
        """
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._lock:
                plugin = self._plugins.get(name)
                busy = plugin is not None and any(
                    s.conn is not None and not s.closed for s in plugin.streams.values()
                )
            if not busy and self._quiescent():
                return True
            time.sleep(0.005)
        return False


def _quiet_new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop, without asyncio's "Using selector: ..." DEBUG record reaching the host's handlers.

    The bridge's own machinery is not the user's business; only that record, on this thread, is
    held back: the user's own asyncio records pass as before.
    """
    thread = threading.get_ident()

    def own_selector_note(record: logging.LogRecord) -> bool:
        return not (record.thread == thread and record.msg == "Using selector: %s")

    logger = logging.getLogger("asyncio")
    logger.addFilter(own_selector_note)
    try:
        return asyncio.new_event_loop()
    finally:
        logger.removeFilter(own_selector_note)


def _guard_otel_handlers(replay_prefix: str) -> None:
    """Keep an OTel ``LoggingHandler`` a replayed record passes from exporting it again.

    The current one is ``opentelemetry-instrumentation-logging``'s (what
    ``opentelemetry-instrument`` installs on the root logger); the SDK's deprecated one and
    subclasses of either are recognised too. Replayed records pass the loggers of the
    replay prefix on their way to the root, so those are guarded as well.
    """
    loggers = [logging.getLogger()]
    if replay_prefix:
        parts = replay_prefix.split(".")
        loggers += [logging.getLogger(".".join(parts[: i + 1])) for i in range(len(parts))]
    for logger in loggers:
        for handler in logger.handlers:
            if _is_otel_logging_handler(handler) and not any(
                isinstance(f, ReplayedRecordFilter) for f in handler.filters
            ):
                handler.addFilter(ReplayedRecordFilter())


def _is_otel_logging_handler(handler: logging.Handler) -> bool:
    return any(
        kind.__name__ == "LoggingHandler" and kind.__module__.startswith("opentelemetry.")
        for kind in type(handler).__mro__
    )


def _same_or_descendant(pid: int, ancestor: int) -> bool:
    """True if ``pid`` is ``ancestor`` or one of its descendants (per /proc)."""
    current = pid
    for _ in range(64):
        if current == ancestor:
            return True
        if current <= 1:
            return False
        try:
            with open(f"/proc/{current}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            return not os.path.isdir("/proc/self")  # no procfs: the token alone must do
        try:
            current = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            return False
    return False


def _process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    end = stat.rindex(b")")
    return stat[end + 2 : end + 3] not in (b"Z", b"X")


def _record_uid_prefix(plugin: str, stream_key: tuple[str, int]) -> str:
    """The first half of each ``log.record.uid`` of a stream (the second is the sequence).

    From the plugin, the token's hash and the runner's stream id, which a restarted host
    gets back from its registry and the runner's hello: a resent record keeps its uid.
    One hash per batch, not cached: a host keeps nothing per runner that has ended.
    """
    material = f"{plugin}\0{stream_key[0]}\0{stream_key[1]}".encode()
    return hashlib.sha256(material).hexdigest()[:16]


def _fallback_path() -> str:
    """Directories that hold this package and msgpack, for a runner interpreter lacking them."""
    import msgpack

    paths = [os.path.dirname(_PACKAGE_DIR)]
    msgpack_dir = os.path.dirname(os.path.dirname(os.path.abspath(msgpack.__file__)))
    if msgpack_dir not in paths:
        paths.append(msgpack_dir)
    return os.pathsep.join(paths)


__all__ = ["HostLogBridge", "PluginProcess"]
