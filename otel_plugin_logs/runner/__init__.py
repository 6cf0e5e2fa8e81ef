"""Runner side: install the handler in a plugin process.

``otel-plugin-logs run`` and ``HostLogBridge.spawn_plugin`` do this automatically for Python
plugins (a ``sitecustomize`` on the child's ``PYTHONPATH``); a plugin author can also call
``install()`` explicitly. Importing this module is cheap: no OTel SDK, no pydantic, no host.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from otel_plugin_logs.config.settings import (
    ENV_AUTO_INSTALL,
    ENV_SOCKET,
    ENV_TOKEN,
    ConfigError,
    RunnerConfig,
    resolve,
)
from otel_plugin_logs.runner.capture import Capture
from otel_plugin_logs.runner.exit_hooks import ExitHooks
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

_lock = threading.Lock()
_installed: _Installation | None = None


class _CapturedHandler(RunnerLogHandler):
    """The handler behind the capture hook: logging's own reconfiguration cannot close it.

    ``dictConfig`` and ``logging.shutdown()`` flush and close every handler they know of; this
    one is not attached to any logger, and lives until ``uninstall()`` or the process exit
    (its own ``atexit`` hook runs before logging's).
    """

    def flush(self) -> None:
        self.nudge()

    def close(self) -> None:
        self.nudge()


class _Installation:
    __slots__ = ("capture", "exit_hooks", "handler")

    def __init__(self, handler: RunnerLogHandler, capture: Capture, exit_hooks: ExitHooks) -> None:
        self.handler = handler
        self.capture = capture
        self.exit_hooks = exit_hooks


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
    global _installed
    with _lock:
        if _installed is not None:
            return _installed.handler
        if transport is None and not (os.environ.get(ENV_SOCKET) and os.environ.get(ENV_TOKEN)):
            if required:
                raise ConfigError(
                    f"{ENV_SOCKET} and {ENV_TOKEN} are not set: this process was not started by a host bridge"
                )
            return None
        if level is not None:
            settings["level"] = logging._checkLevel(level)  # type: ignore[attr-defined]
        config, _ = resolve(RunnerConfig, settings)
        handler = _CapturedHandler(transport, config=config, plugin_version=plugin_version)
        root = logging.getLogger()
        if config.level and config.level < root.getEffectiveLevel():
            root.setLevel(config.level)
        keep = config.keep_console if keep_console is None else keep_console
        capture = Capture(handler.capture, hide_console=not keep)
        exit_hooks = ExitHooks(handler.shutdown, config.exit_flush_timeout_millis)
        capture.install()
        exit_hooks.install()
        _installed = _Installation(handler, capture, exit_hooks)
        return handler


def uninstall(timeout_millis: int | None = None) -> bool:
    """Stop capturing, after sending what the handler holds. True if nothing was lost."""
    global _installed
    with _lock:
        installation, _installed = _installed, None
    if installation is None:
        return True
    installation.capture.uninstall()
    installation.exit_hooks.uninstall()
    return installation.handler.shutdown(timeout_millis)


def installed_handler() -> RunnerLogHandler | None:
    """The handler ``install()`` set up, if any."""
    return _installed.handler if _installed is not None else None


def _auto_install() -> None:
    """Called by the bootstrap ``sitecustomize``; never lets an error stop the plugin."""
    if os.environ.get(ENV_AUTO_INSTALL) != "1":
        return
    try:
        install(keep_console=None)  # the settings are resolved once, in install()
    except Exception as error:
        print(f"[otel-plugin-logs] could not install the log handler: {error}", file=sys.stderr)
