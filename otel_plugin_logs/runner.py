"""Runner side: install the handler in a plugin process.

``otel-plugin-logs run`` and ``HostLogBridge.spawn_plugin`` do this automatically for Python
plugins (a ``sitecustomize`` on the child's ``PYTHONPATH``); a plugin author can also call
``install()`` explicitly. Importing this module is cheap: no OTel SDK, no pydantic, no host.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._config import (
    ENV_AUTO_INSTALL,
    ENV_SOCKET,
    ENV_TOKEN,
    ConfigError,
    RunnerConfig,
    resolve,
)
from ._handler import RunnerLogHandler
from ._transport import InMemoryTransport, Transport, TransportError, TransportRejected, UnixSocketTransport

__all__ = [
    "InMemoryTransport",
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
_installed: RunnerLogHandler | None = None
_original_basic_config: Callable[..., None] | None = None


def install(
    *,
    level: int | str | None = None,
    required: bool = False,
    transport: Transport | None = None,
    plugin_version: str | None = None,
    keep_console: bool | None = True,
    **settings: Any,
) -> RunnerLogHandler | None:
    """Attach a ``RunnerLogHandler`` to the root logger, configured from the environment.

    Returns the handler, or None when the process was not started by a host (no
    ``OTEL_PLUGIN_LOGS_SOCKET``/``OTEL_PLUGIN_LOGS_TOKEN``) and ``required`` is false, so a
    plugin that calls it also runs on its own. Calling it again returns the same handler.
    When a level is given (argument or ``OTEL_PLUGIN_LOGS_LEVEL``) the root logger is lowered
    to it, so records of that level are created at all. ``keep_console=False`` makes a later
    ``logging.basicConfig()`` skip its stderr handler (the host shows those records already);
    ``None`` takes it from ``OTEL_PLUGIN_LOGS_KEEP_CONSOLE``.
    """
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
        handler = RunnerLogHandler(transport, config=config, plugin_version=plugin_version)
        root = logging.getLogger()
        if config.level and config.level < root.getEffectiveLevel():
            root.setLevel(config.level)
        root.addHandler(handler)
        _patch_basic_config(keep_console=config.keep_console if keep_console is None else keep_console)
        _installed = handler
        return handler


def uninstall(timeout_millis: int | None = None) -> bool:
    """Remove the installed handler after sending what it holds. True if nothing was lost."""
    global _installed
    with _lock:
        handler, _installed = _installed, None
    if handler is None:
        return True
    logging.getLogger().removeHandler(handler)
    return handler.shutdown(timeout_millis)


def installed_handler() -> RunnerLogHandler | None:
    """The handler ``install()`` attached, if any."""
    return _installed


def _patch_basic_config(*, keep_console: bool) -> None:
    """Keep ``logging.basicConfig`` working in a plugin after install.

    basicConfig does nothing once the root logger has a handler, so without this a plugin's
    own ``basicConfig(level=INFO)`` would silently lose its level. Under a host that captures
    stderr (auto-install), the console handler it would add is left out unless
    ``keep_console``: the host already shows those records, and would show them twice.
    """
    global _original_basic_config
    if _original_basic_config is not None:
        return
    original = logging.basicConfig
    _original_basic_config = original

    @functools.wraps(original)
    def basic_config(**kwargs: Any) -> None:
        root = logging.getLogger()
        ours = [h for h in root.handlers if isinstance(h, RunnerLogHandler)]
        if not ours or (len(ours) != len(root.handlers) and not kwargs.get("force")):
            original(**kwargs)
            return
        before = set(root.handlers)
        for handler in ours:
            root.removeHandler(handler)
        try:
            original(**kwargs)
        finally:
            if (
                not keep_console
                and "stream" not in kwargs
                and "filename" not in kwargs
                and "handlers" not in kwargs
            ):
                for added in list(root.handlers):
                    if added not in before and type(added) is logging.StreamHandler:
                        root.removeHandler(added)
            for handler in ours:
                if handler not in root.handlers:
                    root.addHandler(handler)

    logging.basicConfig = basic_config


def _auto_install() -> None:
    """Called by the bootstrap ``sitecustomize``; never lets an error stop the plugin."""
    if os.environ.get(ENV_AUTO_INSTALL) != "1":
        return
    try:
        install(keep_console=None)  # the settings are resolved once, in install()
    except Exception as error:
        print(f"[otel-plugin-logs] could not install the log handler: {error}", file=sys.stderr)
