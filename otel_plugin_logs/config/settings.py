"""Former home of every setting, kept only so that old imports work until they are re-pointed.

Nothing is defined here; each name has one home (see ``__all__``'s sources below). Delete
this module once no import names it.
"""

from __future__ import annotations

from otel_plugin_logs.config.checks import (
    MAX_SOCKET_PATH_BYTES,
    SOCKET_NAME,
    check_endpoint,
    check_runtime_dir,
)
from otel_plugin_logs.config.describe import describe
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import PREFIX, Resolved, parse_bool, parse_level, resolve
from otel_plugin_logs.config.host import ExporterName, HostConfig
from otel_plugin_logs.config.runner import (
    ENV_AUTO_INSTALL,
    ENV_KEEP_CONSOLE,
    ENV_PLUGIN_NAME,
    ENV_SOCKET,
    ENV_TOKEN,
    RunnerConfig,
)

__all__ = [
    "ENV_AUTO_INSTALL",
    "ENV_KEEP_CONSOLE",
    "ENV_PLUGIN_NAME",
    "ENV_SOCKET",
    "ENV_TOKEN",
    "MAX_SOCKET_PATH_BYTES",
    "PREFIX",
    "SOCKET_NAME",
    "ConfigError",
    "ExporterName",
    "HostConfig",
    "Resolved",
    "RunnerConfig",
    "check_endpoint",
    "check_runtime_dir",
    "describe",
    "parse_bool",
    "parse_level",
    "resolve",
]
