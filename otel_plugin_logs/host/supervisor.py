"""Spawned runners: their environment, their start, their stderr/stdout, their exit.

Threads: one reader per captured stream of each spawned runner, and one that waits for its
exit. A printed traceback becomes one record; a runner's exit is counted and, if it failed,
reported and exported as a notice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.resource import with_resource_attributes
from otel_plugin_logs.config.runner import ENV_AUTO_INSTALL
from otel_plugin_logs.conventions import RESOURCE_PLUGIN_NAME
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.host.entries import clean_text
from otel_plugin_logs.host.launch import BOOTSTRAP_DIR, PACKAGE_DIR, plan_launch
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.process import (
    PluginProcess,
    RawText,
    TracebackGrouper,
    pump_output,
    stop_processes,
)
from otel_plugin_logs.host.reports import Notice, Reporter
from otel_plugin_logs.host.streams import PluginState, Stream
from otel_plugin_logs.wire.records import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    severity_number,
    truncate_utf8,
)

_log = logging.getLogger("otel_plugin_logs.bridge")

_MAX_STDERR_LINE_BYTES: Final = 64 * 1024
_MAX_TRACEBACK_LINES: Final = 2000  # a longer printed traceback becomes several records
_TRACEBACK_IDLE_SECONDS: Final = 0.5  # a printed traceback with no line for this long is complete
_EXIT_DRAIN_SECONDS: Final = 2.0

# In a spawned runner's environment: what `opentelemetry-instrument` (the SDK's configurator,
# the distro, opentelemetry-instrumentation-logging) reads to export the process's logs
# itself. The bridge already exports them; traces and metrics are left alone.
PLUGIN_OWN_LOG_EXPORT_OFF: Final = {
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false",
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "false",
}


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """How to start one runner (``HostLogBridge.spawn_plugin``'s arguments, checked)."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    cwd: str | None
    stdin: int | IO[Any] | None
    stdout: int | IO[Any] | None
    capture_stdout: bool
    new_process_group: bool
    die_with_parent: bool


@dataclass(frozen=True, slots=True)
class SpawnHooks:
    """What starting a runner needs of the rest of the host."""

    make_resource: Callable[[PluginState, int], ResourceInfo]
    save_registry: Callable[[], None]
    settle: Callable[[PluginProcess, float | None], bool]
    connect_timeout_seconds: float | None  # None: it is not expected to connect (no auto-install)


def child_env(
    config: HostConfig,
    host_service: str,
    name: str,
    base_env: Mapping[str, str],
    runner_env: Mapping[str, str],
    auto_install: bool,
) -> dict[str, str]:
    """A runner's environment: the caller's, its identity, and the bootstrap when auto-installed."""
    env = dict(base_env)
    env.update(runner_env)
    if auto_install:
        env[ENV_AUTO_INSTALL] = "1"
        existing = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + existing if existing else "")
        env["OTEL_PLUGIN_LOGS_FALLBACK_PATH"] = _fallback_path()
    # The plugin's own OTel SDK (its spans) names the same service as its logs: the plugin,
    # in the host's namespace. The host's own OTEL_SERVICE_NAME must not leak into it.
    env["OTEL_SERVICE_NAME"] = name
    env["OTEL_RESOURCE_ATTRIBUTES"] = with_resource_attributes(
        env.get("OTEL_RESOURCE_ATTRIBUTES", ""),
        {"service.namespace": host_service, RESOURCE_PLUGIN_NAME: name},
    )
    if not config.plugin_log_export:
        env.update(PLUGIN_OWN_LOG_EXPORT_OFF)
    return env


def start_process(request: SpawnRequest) -> subprocess.Popen[bytes]:
    launch = plan_launch(request.argv, request.env, cwd=request.cwd, die_with_parent=request.die_with_parent)
    return launch.popen(
        cwd=request.cwd,
        stdin=request.stdin,
        stdout=subprocess.PIPE if request.capture_stdout else request.stdout,
        stderr=subprocess.PIPE,
        process_group=0 if request.new_process_group else None,
    )


class Supervisor:
    """The runners the bridge spawned: their output, their exits, the ones that never connect."""

    def __init__(self, config: HostConfig, lock: threading.RLock, ledger: Ledger, reporter: Reporter) -> None:
        self._config = config
        self._lock = lock
        self._ledger = ledger
        self._reporter = reporter
        self._processes: list[PluginProcess] = []
        self.pipeline: ExportPipeline | None = None
        self.stopped: Callable[[], bool] = lambda: False

    def running(self) -> list[PluginProcess]:
        with self._lock:
            return [process for process in self._processes if process.running]

    def every(self) -> list[PluginProcess]:
        with self._lock:
            return list(self._processes)

    def watch(self, process: PluginProcess, capture_stdout: bool) -> None:
        """One reader per captured stream, and one thread that waits for the exit."""
        with self._lock:
            self._processes.append(process)
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

    def spawn(
        self,
        request: SpawnRequest,
        digest: str,
        version: str | None,
        hooks: SpawnHooks,
    ) -> PluginProcess:
        """Start the runner of an issued identity; its pid is recorded before it can connect."""
        with self._lock:  # the child cannot be authenticated before its pid is recorded
            popen = start_process(request)
            registration = self._ledger.registrations[digest]
            registration.pid = popen.pid
            registration.token = None
            plugin = self._ledger.plugin(request.name, version)
            registration.resource = plugin.last_resource = hooks.make_resource(plugin, popen.pid)
            self._ledger.dirty = True
        # Written before the runner can connect: a host killed a moment later still knows it.
        hooks.save_registry()
        process = PluginProcess(
            request.name, popen, digest, own_group=request.new_process_group, settle=hooks.settle
        )
        self.watch(process, request.capture_stdout)
        if hooks.connect_timeout_seconds is not None:
            process.connect_deadline = time.monotonic() + hooks.connect_timeout_seconds
        return process

    def stop(
        self, spawned: Sequence[PluginProcess], deadline: float, wait_for_plugin: Callable[[str, float], bool]
    ) -> None:
        """SIGTERM the spawned runners that still run, wait, SIGKILL the rest; within ``deadline``."""
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in spawned)
        _log.info("stopping plugins that still run: %s", names)
        grace = min(self._config.kill_timeout_millis / 1000.0, (deadline - time.monotonic()) / 2)
        grace_deadline = time.monotonic() + max(0.0, grace)
        # SIGKILL cannot be ignored: the extra moment is only the kernel's, to end them.
        killed = stop_processes(spawned, grace_deadline, max(deadline, time.monotonic() + 0.2))
        if killed:
            _log.warning("plugins did not stop after SIGTERM; killed them (SIGKILL): %s", ", ".join(killed))
        for name in sorted({p.name for p in spawned}):
            wait_for_plugin(name, max(0.0, (deadline - time.monotonic()) / 4))

    def stream_retired(self, stream: Stream) -> None:
        """A runner's stream ended and all it sent is settled: its process, if spawned here, is told.

        Called by the ledger with its lock held (the same lock): no I/O, nothing that waits.
        """
        digest = stream.key.digest
        with self._lock:
            for process in self._processes:
                if process.digest == digest and process.pid == stream.runner_pid:
                    process.mark_records_settled()

    def check_connected(self) -> None:
        """Say so when a spawned runner never connected: its records would only reach stderr."""
        now = time.monotonic()
        late = []
        with self._lock:
            for process in self._processes:
                deadline = process.connect_deadline
                if deadline is None or now < deadline:
                    continue
                process.connect_deadline = None  # checked once
                registration = self._ledger.registrations.get(process.digest)
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
                self._config.connect_timeout_millis / 1000.0,
            )

    def _pump_output(self, process: PluginProcess, iostream: str, pipe: IO[bytes]) -> None:
        level = self._config.stderr_level if iostream == "stderr" else self._config.stdout_level
        with self._lock:
            plugin = self._ledger.plugin(process.name)
        logger = logging.getLogger(f"{plugin.replayer.base_name}.{iostream}")

        def on_text(raw: RawText) -> None:
            self._on_raw_text(plugin, process, logger, level, iostream, raw)

        grouper = TracebackGrouper(self._config.max_body_bytes, _MAX_TRACEBACK_LINES)
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
        drain_deadline = time.monotonic() + _EXIT_DRAIN_SECONDS
        for pump in pumps:
            pump.join(max(0.0, drain_deadline - time.monotonic()))
        process.returncode = returncode
        with self._lock:
            plugin = self._ledger.plugin(process.name)
            never_connected = self._count_exit(plugin, process, returncode)
        if returncode == 0:
            _log.info("plugin %s (pid %d) exited with code 0", process.name, process.pid)
        else:
            described = f"signal {-returncode}" if returncode < 0 else f"code {returncode}"
            text = f"plugin {process.name} (pid {process.pid}) exited with {described}"
            _log.warning("%s", text)
            self._reporter.export_notice(Notice(plugin, "runner_exit", described, 1, text))
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

    def _count_exit(self, plugin: PluginState, process: PluginProcess, returncode: int) -> bool:
        """A dead runner sends nothing more: what it announced but never sent is a gap now (lock held).

        Returns whether it never connected.
        """
        plugin.counters.exits.append(returncode)
        registration = self._ledger.registrations.get(process.digest)
        never_connected = (
            process.connect_deadline is not None and registration is not None and not registration.connected
        )
        process.connect_deadline = None  # no "has not connected" warning for a process that ended
        self._ledger.end_registration(process.digest)
        for stream in list(plugin.streams.values()):
            if stream.closed and stream.runner_pid == process.pid:
                self._ledger.finish(stream)
        self._ledger.release_registration(process.digest)
        with contextlib.suppress(ValueError):
            self._processes.remove(process)
        return never_connected

    def _on_raw_text(
        self,
        plugin: PluginState,
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
        entry, level, stacktrace = self._raw_entry(raw, level, iostream)
        if self._config.replay and logger.isEnabledFor(level):
            otel = {
                "plugin": plugin.name,
                "plugin_version": plugin.version,
                "runner_pid": process.pid,
                "resource": resource.attributes if resource is not None else {},
            }
            logger.handle(plugin.replayer.make_record(logger.name, entry, level, stacktrace, otel))
        self._offer(resource, entry)

    def _offer(self, resource: ResourceInfo | None, entry: Entry) -> None:
        pipeline = self.pipeline
        if pipeline is not None and resource is not None and not self.stopped():
            pipeline.offer([Item.of(resource, entry)])

    def _raw_entry(self, raw: RawText, level: int, iostream: str) -> tuple[Entry, int, str | None]:
        """A line (or a printed traceback, then an error whatever the stream's level) as a record."""
        limit = self._config.max_attribute_length
        text, _ = truncate_utf8(clean_text(raw.text, len(raw.text)), self._config.max_body_bytes)
        attributes: dict[str, Any] = {"log.iostream": iostream}
        stacktrace = None
        if raw.stacktrace is not None:
            level = max(level, logging.ERROR)
            stacktrace = clean_text(raw.stacktrace, len(raw.stacktrace))
            attributes[EXCEPTION_STACKTRACE] = stacktrace
            if raw.exception_type:
                attributes[EXCEPTION_TYPE] = clean_text(raw.exception_type, limit)
                attributes[EXCEPTION_MESSAGE] = clean_text(raw.exception_message, limit)
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
        return entry, level, stacktrace


def _fallback_path() -> str:
    """Directories that hold this package and msgpack, for a runner interpreter lacking them."""
    import msgpack

    paths = [os.path.dirname(PACKAGE_DIR)]
    msgpack_dir = os.path.dirname(os.path.dirname(os.path.abspath(msgpack.__file__)))
    if msgpack_dir not in paths:
        paths.append(msgpack_dir)
    return os.pathsep.join(paths)
