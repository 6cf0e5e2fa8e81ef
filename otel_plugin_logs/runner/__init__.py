"""Runner side: install the handler in a plugin process.

``otel-plugin-logs run`` and ``HostLogBridge.spawn_plugin`` do this automatically for Python
plugins (a ``sitecustomize`` on the child's ``PYTHONPATH``); a plugin author can also call
``install()`` explicitly. Importing this module is cheap: no OTel SDK, no pydantic, no host.

Auto-install runs at every plugin start, so it loads only what the capture needs (logging, the
runner settings, the capture and exit hooks); the handler, with msgpack and the socket code, is
loaded when the first record arrives. The transports and the handler class are exported here
but imported on first use.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.runner import ENV_AUTO_INSTALL, ENV_SOCKET, ENV_TOKEN, RunnerConfig
from otel_plugin_logs.runner.capture import Capture
from otel_plugin_logs.runner.exit_hooks import ExitHooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from otel_plugin_logs.runner.handler import RunnerLogHandler
    from otel_plugin_logs.runner.rpc_transport import FrameEncoding, RpcTransport
    from otel_plugin_logs.runner.transport import (
        InMemoryTransport,
        Transport,
        TransportError,
        TransportRejected,
        UnixSocketTransport,
    )

__all__ = [
    "FrameEncoding",
    "InMemoryTransport",
    "RpcTransport",
    "RunnerLogHandler",
    "Transport",
    "TransportError",
    "TransportRejected",
    "UnixSocketTransport",
    "install",
    "installed_handler",
    "uninstall",
]

# Exported names, each imported from its module on first use.
_LAZY: Final = {
    "RunnerLogHandler": "otel_plugin_logs.runner.handler",
    "FrameEncoding": "otel_plugin_logs.runner.rpc_transport",
    "RpcTransport": "otel_plugin_logs.runner.rpc_transport",
    "InMemoryTransport": "otel_plugin_logs.runner.transport",
    "Transport": "otel_plugin_logs.runner.transport",
    "TransportError": "otel_plugin_logs.runner.transport",
    "TransportRejected": "otel_plugin_logs.runner.transport",
    "UnixSocketTransport": "otel_plugin_logs.runner.transport",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_lock = threading.Lock()
_installed: _Installation | None = None
_captured_handler_class: type[RunnerLogHandler] | None = None


def _new_handler(
    transport: Transport | None, config: RunnerConfig, plugin_version: str | None
) -> RunnerLogHandler:
    """The handler behind the capture hook: logging's own reconfiguration cannot close it.

    ``dictConfig`` and ``logging.shutdown()`` flush and close every handler they know of; this
    one is not attached to any logger, and lives until ``uninstall()`` or the process exit
    (its own ``atexit`` hook runs before logging's).
    """
    global _captured_handler_class
    if _captured_handler_class is None:
        from otel_plugin_logs.runner.handler import RunnerLogHandler

        class _CapturedHandler(RunnerLogHandler):
            def flush(self) -> None:
                self.nudge()

            def close(self) -> None:
                self.nudge()

        _captured_handler_class = _CapturedHandler
    return _captured_handler_class(transport, config=config, plugin_version=plugin_version)


class _Installation:
    """What ``install`` set up; the handler itself may be made on the first record (auto-install)."""

    __slots__ = (
        "_build_lock",
        "_building",
        "_config",
        "_failed",
        "_plugin_version",
        "_stopped",
        "capture",
        "exit_hooks",
        "handler",
    )

    def __init__(self, config: RunnerConfig, plugin_version: str | None, keep_console: bool) -> None:
        self._config = config
        self._plugin_version = plugin_version
        self._build_lock = threading.RLock()  # reentrant: a record logged while the handler is made
        self._building = False
        self._failed = False
        self._stopped = False
        self.handler: RunnerLogHandler | None = None
        self.capture = Capture(self._accept, hide_console=not keep_console)
        self.exit_hooks = ExitHooks(self._flush, config.exit_flush_timeout_millis)
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have been making the handler: its lock is not the child's.
        self._build_lock = threading.RLock()
        self._building = False

    def start(self, transport: Transport | None, *, deferred: bool) -> None:
        if not deferred:
            self.handler = _new_handler(transport, self._config, self._plugin_version)
        self.capture.install()
        self.exit_hooks.install()

    def materialize(self) -> RunnerLogHandler | None:
        """The handler, made now if no record needed it yet (None if it could not be made)."""
        handler = self.handler
        if handler is not None or self._failed:
            return handler
        with self._build_lock:
            if self.handler is not None or self._building or self._failed:
                return self.handler
            self._building = True
            try:
                handler = _new_handler(None, self._config, self._plugin_version)
            except Exception as error:
                self._failed = True
                # Not through sys.stderr: during a record's dispatch the console gate hides it.
                stream = sys.__stderr__ or sys.stderr
                print(f"[otel-plugin-logs] could not start the log handler: {error}", file=stream)
                return None
            finally:
                self._building = False
            self.handler = handler
            if self._stopped:
                return handler
            self.capture.retarget(handler.capture)
            # atexit runs the exit hooks' flush first when registered after the handler's own
            # hook: a signal that comes during that flush then knows one is under way.
            self.exit_hooks.uninstall()
            self.exit_hooks.install()
            return handler

    def _accept(self, record: logging.LogRecord) -> bool:
        handler = self.handler or self.materialize()
        return handler is not None and handler.capture(record)

    def _flush(self, timeout_millis: int | None) -> bool:
        handler = self.handler
        return True if handler is None else handler.shutdown(timeout_millis)  # no record: nothing held

    def stop(self, timeout_millis: int | None) -> bool:
        with self._build_lock:
            self._stopped = True
        self.capture.uninstall()
        self.exit_hooks.uninstall()
        return self._flush(timeout_millis)


def install(
    *,
    level: int | str | None = None,
    required: bool = False,
    transport: Transport | None = None,
    plugin_version: str | None = None,
    keep_console: bool | None = True,
    **settings: Any,
) -> RunnerLogHandler | None:
    """Capture every record of this process for the host bridge, configured from the environment.

    The capture hooks ``logging.Logger.callHandlers``, where every record of every logger
    passes once after that logger's own level and filters: it survives ``dictConfig``,
    ``basicConfig(force=True)``, ``fileConfig``, removed or closed handlers and
    ``logging.shutdown()``, and sees loggers with ``propagate=False``. ``os._exit`` and a
    default SIGTERM/SIGHUP flush first (bounded by
    ``OTEL_PLUGIN_LOGS_RUNNER_EXIT_FLUSH_TIMEOUT_MILLIS``).

    Returns the handler, or None when the process was not started by a host (no
    ``OTEL_PLUGIN_LOGS_SOCKET``/``OTEL_PLUGIN_LOGS_TOKEN``) and ``required`` is false, so a
    plugin that calls it also runs on its own. Calling it again returns the same handler.
    When a level is given (argument or ``OTEL_PLUGIN_LOGS_LEVEL``) the root logger is lowered
    to it, so records of that level are created at all. ``keep_console=False`` hides the
    plugin's own console output (stdout/stderr) of the records the bridge carries, so a host
    that captures both shows each record once; ``None`` takes it from
    ``OTEL_PLUGIN_LOGS_KEEP_CONSOLE``.
    """
    installation = _install(
        level, required, transport, plugin_version, keep_console, settings, deferred=False
    )
    return None if installation is None else installation.materialize()


def _install(
    level: int | str | None,
    required: bool,
    transport: Transport | None,
    plugin_version: str | None,
    keep_console: bool | None,
    settings: dict[str, Any],
    *,
    deferred: bool,
) -> _Installation | None:
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        if transport is None and not (os.environ.get(ENV_SOCKET) and os.environ.get(ENV_TOKEN)):
            if required:
                raise ConfigError(
                    f"{ENV_SOCKET} and {ENV_TOKEN} are not set: this process was not started by a host bridge"
                )
            return None
        if level is not None:
            settings["level"] = logging._checkLevel(level)  # type: ignore[attr-defined]
        config, _ = resolve(RunnerConfig, settings)
        root = logging.getLogger()
        if config.level and config.level < root.getEffectiveLevel():
            root.setLevel(config.level)
        keep = config.keep_console if keep_console is None else keep_console
        installation = _Installation(config, plugin_version, keep)
        installation.start(transport, deferred=deferred and transport is None)
        _installed = installation
        return installation


def uninstall(timeout_millis: int | None = None) -> bool:
    """Stop capturing, after sending what the handler holds. True if nothing was lost."""
    global _installed
    with _lock:
        installation, _installed = _installed, None
    if installation is None:
        return True
    return installation.stop(timeout_millis)


def installed_handler() -> RunnerLogHandler | None:
    """The handler ``install()`` set up, if any."""
    return _installed.materialize() if _installed is not None else None


def _auto_install() -> None:
    """Called by the bootstrap ``sitecustomize``; never lets an error stop the plugin."""
    if os.environ.get(ENV_AUTO_INSTALL) != "1":
        return
    try:
        # The settings are resolved once, here; the handler is made on the first record.
        _install(None, False, None, None, None, {}, deferred=True)
    except Exception as error:
        print(f"[otel-plugin-logs] could not install the log handler: {error}", file=sys.stderr)
